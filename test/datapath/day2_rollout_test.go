//go:build datapath

package datapath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/rollout"
	"github.com/sessionops/session-operator/internal/store"
)

// The rollout cases: the harness has no controller, so it takes the controller's steps
// itself, through the same decision (internal/rollout.Next) and the same switchover
// (internal/store Admin.Switchover): a pod "deleted" by the controller runs its rendered
// preStop, gets SIGTERM, and is made again from the current render (the StatefulSet is
// OnDelete), with empty volumes unless persistence is on.
const (
	day2Sessions = 200
	day2Clients  = 4
	day2Apps     = 2
)

// day2 is one case: a store under the reference app's writers, a sampler of the
// servers' roles, and the harness's stand-in for the controller.
type day2 struct {
	t      *testing.T
	c      *cluster
	l      *ledger
	w      *writers
	admin  *store.Admin
	target store.Target
	smp    *sampler

	mu        sync.Mutex // guards c.redis against the sampler
	rev       map[string]string
	updateRev string
	desired   int
	restarts  int
	from      time.Time
	steps     []string
}

func storeSet(t testing.TB, c *cluster) *appsv1.StatefulSet {
	sts, err := findObject[*appsv1.StatefulSet](c.desired, c.names.Store())
	must(t, err)
	return sts
}

func newDay2(t *testing.T, mutate func(*sessionv1.SessionCluster), maxServers int) *day2 {
	c := newClusterWith(t, mutate, maxServers)
	d := &day2{t: t, c: c, l: newLedger(), admin: &store.Admin{Timeout: time.Second, ClientName: "day2-harness"}, rev: map[string]string{}}
	sts := storeSet(t, c)
	d.updateRev = render.Hash(sts.Spec.Template)
	d.desired = int(*sts.Spec.Replicas)
	for _, p := range c.redis {
		d.rev[p.name] = d.updateRev
	}
	d.target = store.Target{MasterName: c.names.MasterName(), Sentinels: c.sentinelAddrs(), Username: render.UserOperator, Password: harnessInternal.Operator}
	c.startSettledStore()
	c.addApps(day2Apps)
	for _, p := range c.apps {
		c.startApp(p)
	}
	if err := createSessions(context.Background(), d.l, c.appURLs(), day2Sessions, 8); err != nil {
		t.Fatalf("creating sessions: %v", err)
	}
	d.w = startWriters(d.l, d.l.ids(), c.appURLs(), day2Clients, writerPause)
	t.Cleanup(func() {
		if d.w != nil {
			d.w.halt()
		}
	})
	d.smp = startSampler(d.redisPods)
	t.Cleanup(d.smp.halt)
	time.Sleep(time.Second)
	d.from = time.Now()
	return d
}

func (d *day2) redisPods() []*pod {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*pod(nil), d.c.redis...)
}

// rerender applies mutate to the SessionCluster and renders it again; the ConfigMap's
// files change under every pod (as the kubelet updates a ConfigMap volume), the running
// processes keep what they started with. It reports whether the server template changed.
func (d *day2) rerender(mutate func(*sessionv1.SessionCluster)) bool {
	c := d.c
	mutate(c.sc)
	c.rerender(harnessInputs(c.sc))
	des := c.desired
	cm, err := findObject[*corev1.ConfigMap](des, c.names.StoreConfig())
	must(d.t, err)
	for k, v := range cm.Data {
		path := filepath.Join(c.configDir, k)
		tmp := path + ".new"
		must(d.t, os.WriteFile(tmp, []byte(v), 0o444))
		must(d.t, os.Rename(tmp, path))
	}
	sts := storeSet(d.t, c)
	old := d.updateRev
	d.updateRev = render.Hash(sts.Spec.Template)
	d.desired = int(*sts.Spec.Replicas)
	return old != d.updateRev
}

// state is what the controller would see: pods, their revisions and readiness, what each
// server and the Sentinels report.
func (d *day2) state(ctx context.Context) rollout.State {
	c := d.c
	pods := d.redisPods()
	s := rollout.State{UpdateRevision: d.updateRev, Desired: d.desired, Current: len(pods)}
	view := d.admin.Sentinels(ctx, d.target)
	s.FailoverInProgress = view.FailoverInProgress
	s.SentinelsReady = view.Reachable == len(c.sentinels)
	if view.Primary != "" {
		s.Primary = shortHost(view.Primary)
	}
	servers := map[string]store.Server{}
	var primary store.Server
	for _, p := range pods {
		sv := d.admin.Server(ctx, fmt.Sprintf("%s:%d", p.host, render.RedisPort), d.target)
		servers[p.name] = sv
		if p.name == s.Primary {
			primary = sv
		}
	}
	for i, p := range pods {
		sv := servers[p.name]
		rp := rollout.Pod{Name: p.name, Ordinal: i, Revision: d.rev[p.name], Role: sv.Role}
		rp.Ready = p.proc != nil && p.proc.running() && c.probe(p, p.readyProbe) == nil
		if off, ok := primary.Replicas[p.host]; ok && sv.LinkUp {
			rp.InSync = primary.Offset-off < 1<<20
		}
		s.Pods = append(s.Pods, rp)
	}
	return s
}

// drive takes rollout.Next's steps until Done.
func (d *day2) drive(timeout time.Duration) {
	t := d.t
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	lastWait := ""
	for {
		if time.Now().After(deadline) {
			d.c.dumpLogs()
			t.Fatalf("rollout not done after %s; steps: %s", timeout, strings.Join(d.steps, "\n"))
		}
		st := rollout.Next(d.state(ctx))
		if st.Kind != rollout.Wait || st.Reason != lastWait {
			d.steps = append(d.steps, fmt.Sprintf("%.1fs %s", time.Since(d.from).Seconds(), st))
		}
		lastWait = ""
		switch st.Kind {
		case rollout.Done:
			return
		case rollout.Wait:
			lastWait = st.Reason
			time.Sleep(200 * time.Millisecond)
		case rollout.DeletePod:
			d.replace(d.c.redisPod(st.Pod))
		case rollout.ScaleTo:
			d.scaleTo(st.Replicas)
		case rollout.Switchover:
			var cands []string
			for _, n := range st.Candidates {
				cands = append(cands, d.c.redisPod(n).host)
			}
			from := d.c.redisPod(st.Pod).host
			d.steps = append(d.steps, fmt.Sprintf("%.1fs switchover from %s", time.Since(d.from).Seconds(), shortHost(from)))
			to, err := d.admin.Switchover(ctx, d.target, from, cands, render.RedisPort, 20*time.Second)
			if err != nil {
				if errors.Is(err, store.ErrNotSafe) {
					d.steps = append(d.steps, "switchover refused: "+err.Error())
					time.Sleep(time.Second)
					continue
				}
				d.c.dumpLogs()
				t.Fatalf("switchover: %v", err)
			}
			d.steps = append(d.steps, fmt.Sprintf("%.1fs switched over to %s", time.Since(d.from).Seconds(), shortHost(to)))
		}
	}
}

// stopPod is the kubelet deleting a pod: preStop, then SIGTERM within the grace period.
func (d *day2) stopPod(p *pod) {
	if p.container.Lifecycle != nil && p.container.Lifecycle.PreStop != nil {
		out, err := d.c.runHook(p, p.container.Lifecycle.PreStop)
		if err != nil {
			d.t.Errorf("preStop of %s: %v\n%s", p.name, err, out)
		}
		if s := strings.TrimSpace(out); s != "" {
			d.steps = append(d.steps, fmt.Sprintf("%.1fs preStop %s: %s", time.Since(d.from).Seconds(), p.name, lastLines(s, 2)))
		}
	}
	p.proc.stop(10 * time.Second)
}

// fresh is the pod made again by the StatefulSet from the current render.
func (d *day2) fresh(i int) *pod {
	c := d.c
	name := c.names.StorePod(i)
	host := name + "." + c.names.StoreDomain()
	np := c.newStatefulPod("redis", name, host, c.addrs[host], storeSet(d.t, c))
	d.rev[name] = d.updateRev
	return np
}

func (d *day2) persistent() bool { return d.c.sc.Spec.Store.Persistence != nil }

// replace deletes p and lets the StatefulSet make it again at the update revision.
func (d *day2) replace(p *pod) {
	d.stopPod(p)
	if !d.persistent() {
		d.c.wipe(p)
	}
	var i int
	fmt.Sscanf(p.name[strings.LastIndex(p.name, "-")+1:], "%d", &i)
	np := d.fresh(i)
	np.starts = p.starts
	d.mu.Lock()
	*p = *np
	d.mu.Unlock()
	d.c.start(p)
	d.restarts++
}

// scaleTo is the StatefulSet scaling (Parallel pod management): new pods all at once,
// the highest ordinals removed all at once.
func (d *day2) scaleTo(n int) {
	pods := d.redisPods()
	for i := len(pods); i < n; i++ {
		np := d.fresh(i)
		d.c.wipe(np)
		d.mu.Lock()
		d.c.redis = append(d.c.redis, np)
		d.mu.Unlock()
		d.c.start(np)
	}
	var wg sync.WaitGroup
	for i := n; i < len(pods); i++ {
		wg.Add(1)
		go func(p *pod) { defer wg.Done(); d.stopPod(p) }(pods[i])
	}
	wg.Wait()
	if n < len(pods) {
		d.mu.Lock()
		d.c.redis = d.c.redis[:n]
		d.mu.Unlock()
	}
}

// finish stops the writers, reads every session back and records the case.
func (d *day2) finish(name string) Day2Case {
	t := d.t
	c := d.c
	primary, err := c.sentinelsPrimary()
	if err == nil {
		err = c.waitSettled(primary, 60*time.Second)
	}
	if err != nil {
		c.dumpLogs()
		t.Errorf("store not settled after the case: %v", err)
	}
	time.Sleep(time.Second)
	d.w.halt()
	d.w = nil
	d.smp.halt()
	if n, err := readBack(context.Background(), d.l, d.l.ids(), c.appURLs(), 8); n > 0 {
		t.Errorf("%d sessions could not be read back: %v", n, err)
	}
	acked, lost := d.l.counts()
	failed := d.l.failedBetween(d.from, time.Now())
	d.smp.mu.Lock()
	defer d.smp.mu.Unlock()
	dc := Day2Case{
		Name: name, AcknowledgedWrites: int64(acked), FailedWrites: int64(failed), AcknowledgedLost: int64(lost),
		PrimaryChanges: d.smp.changes, StoreRestarts: d.restarts, MastersSeenMax: d.smp.mastersMax,
		SecondsWithoutPrimary: round2(d.smp.without.Seconds()),
	}
	recordDay2Case(t, dc)
	t.Logf("%s: %+v; longest stall between two successful writes %.2fs; %d role samples\nsteps:\n%s",
		name, dc, d.l.longestStall(d.from, time.Now()), d.smp.samples, strings.Join(d.steps, "\n"))
	if lost > 0 {
		t.Errorf("%s: %d acknowledged writes lost", name, lost)
	}
	return dc
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// sampler asks every server for its role four times a second: the most servers reporting
// role:master at once, how often a new server became the primary, and for how long no
// server was a writable primary.
type sampler struct {
	mu         sync.Mutex
	pods       func() []*pod
	stop, done chan struct{}
	mastersMax int
	changes    int
	primary    string
	prev       map[string]bool
	without    time.Duration
	samples    int
	clients    map[string]*redis.Client
}

func startSampler(pods func() []*pod) *sampler {
	s := &sampler{pods: pods, stop: make(chan struct{}), done: make(chan struct{}), clients: map[string]*redis.Client{}}
	go s.run()
	return s
}

func (s *sampler) client(p *pod) *redis.Client {
	if c, ok := s.clients[p.addr]; ok {
		return c
	}
	c := redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("%s:%d", p.addr, render.RedisPort), Username: render.UserOperator, Password: harnessInternal.Operator, Protocol: 2,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaxRetries: -1, PoolSize: 1,
	})
	s.clients[p.addr] = c
	return c
}

func (s *sampler) run() {
	defer close(s.done)
	defer func() {
		for _, c := range s.clients {
			c.Close()
		}
	}()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(250 * time.Millisecond):
		}
		var masters []string
		for _, p := range s.pods() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			raw, err := s.client(p).Info(ctx, "replication", "persistence").Result()
			cancel()
			if err != nil {
				continue
			}
			f := parseInfo(raw)
			if f["role"] == "master" && f["loading"] != "1" {
				masters = append(masters, p.name)
			}
		}
		now := time.Now()
		s.mu.Lock()
		s.samples++
		s.mastersMax = max(s.mastersMax, len(masters))
		if len(masters) == 0 {
			s.without += now.Sub(last)
		}
		// A change is a server becoming a master that was not one in the previous sample
		// (and is not the primary coming back after a restart).
		sort.Strings(masters)
		for _, m := range masters {
			switch {
			case s.primary == "":
				s.primary = m
			case m != s.primary && !s.prev[m]:
				s.changes++
				s.primary = m
			}
		}
		s.prev = map[string]bool{}
		for _, m := range masters {
			s.prev[m] = true
		}
		s.mu.Unlock()
		last = now
	}
}

// reset starts the counts afresh, from the current primary.
func (s *sampler) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mastersMax, s.changes, s.without, s.samples = 0, 0, 0, 0
	s.primary = ""
}

func (s *sampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// TestDay2RolloutImage: a new store image is rolled out by the operator's steps: two
// replicas replaced, one switchover, the old primary replaced.
func TestDay2RolloutImage(t *testing.T) {
	d := newDay2(t, nil, 0)
	if !d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Image = "redis:7.4.1" }) {
		t.Fatal("a new image did not change the server template")
	}
	d.drive(3 * time.Minute)
	dc := d.finish("rollout-image")
	checkRollout(t, dc, d)
}

// TestDay2RolloutMaxMemory: a changed maxMemory (a ConfigMap change the config hash
// covers) is rolled out the same way, and every server runs with it afterwards.
func TestDay2RolloutMaxMemory(t *testing.T) {
	d := newDay2(t, nil, 0)
	q := resource.MustParse("300Mi")
	if !d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.MaxMemory = &q }) {
		t.Fatal("a new maxMemory did not change the server template")
	}
	d.drive(3 * time.Minute)
	dc := d.finish("rollout-maxmemory")
	checkRollout(t, dc, d)
	for _, p := range d.c.redis {
		r := d.c.redisClient(p)
		v, err := r.ConfigGet(context.Background(), "maxmemory").Result()
		r.Close()
		if err != nil || v["maxmemory"] != fmt.Sprint(q.Value()) {
			t.Errorf("%s: maxmemory %v (%v), want %d", p.name, v, err, q.Value())
		}
	}
}

func checkRollout(t *testing.T, dc Day2Case, d *day2) {
	if dc.PrimaryChanges != 1 {
		t.Errorf("rollout: %d primary changes, want exactly 1", dc.PrimaryChanges)
	}
	if dc.StoreRestarts != len(d.c.redis) {
		t.Errorf("rollout: %d pods replaced, want %d", dc.StoreRestarts, len(d.c.redis))
	}
	// Writes pause during the switchover (CLIENT PAUSE WRITE until every Sentinel names
	// the new primary) rather than fail. The target is at most 2 s of refused
	// writes: a write that outlives the app's own timeout on a loaded machine may be
	// refused, but never for longer than that; the pause is bounded loosely and logged.
	if span := d.l.refusedSpan(d.from, time.Now()); span > 2 {
		t.Errorf("rollout: writes refused for %.2fs (%d refused), target at most 2 s; refused: %s", span, dc.FailedWrites,
			strings.Join(d.l.describeFailed(d.from, time.Now(), 5), "; "))
	} else if dc.FailedWrites > 0 {
		t.Logf("rollout: %d writes refused within %.2fs", dc.FailedWrites, span)
	}
	if stall := d.l.longestStall(d.from, time.Now()); stall > 5 {
		t.Errorf("rollout: writes paused %.2fs", stall)
	}
	for _, p := range d.c.redis {
		if d.rev[p.name] != d.updateRev {
			t.Errorf("%s left at an old revision", p.name)
		}
		if strings.Contains(p.currentLog(), "starting as primary") {
			t.Errorf("%s: a replaced pod started as primary", p.name)
		}
	}
}

// TestDay2Scale353: store.replicas 3 -> 5 -> 3 under writes: no running pod is touched,
// no failover, no failed write.
func TestDay2Scale353(t *testing.T) {
	d := newDay2(t, nil, 5)
	startsBefore := map[string]int{}
	for _, p := range d.c.redis {
		startsBefore[p.name] = p.starts
	}
	if d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Replicas = 5 }) {
		t.Fatal("scaling to 5 changed the server template: every pod would roll")
	}
	d.drive(2 * time.Minute)
	if len(d.c.redis) != 5 {
		t.Fatalf("%d servers after scaling to 5", len(d.c.redis))
	}
	if d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Replicas = 3 }) {
		t.Fatal("scaling to 3 changed the server template")
	}
	d.drive(2 * time.Minute)
	dc := d.finish("scale-3-5-3")
	for _, p := range d.c.redis {
		if p.starts != startsBefore[p.name] {
			t.Errorf("%s was restarted by the scale", p.name)
		}
	}
	if dc.FailedWrites != 0 || dc.PrimaryChanges != 0 || dc.MastersSeenMax != 1 {
		t.Errorf("scale: %d failed writes, %d primary changes, %d masters seen at once; want 0, 0, 1", dc.FailedWrites, dc.PrimaryChanges, dc.MastersSeenMax)
	}
}

// TestDay2RestartAll: every store pod is lost at once (a cluster restart) with
// persistence on, the servers and the Sentinels: first the primary is moved off the first
// server (so that "elect the first server" would be wrong), then every server's preStop
// and SIGTERM and every Sentinel's SIGTERM at once, and the pods come back with their
// claims after DAY2_RESTART_DELAY (default 5s, longer than down-after, as pods take
// seconds to be made again). The server that was the primary must be elected again, and
// the store must be writable again within 20 s.
func TestDay2RestartAll(t *testing.T) {
	d := newDay2(t, func(sc *sessionv1.SessionCluster) {
		sc.Spec.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}
	}, 0)
	delay := 5 * time.Second
	if v, err := time.ParseDuration(os.Getenv("DAY2_RESTART_DELAY")); err == nil {
		delay = v
	}
	ctx := context.Background()
	first := d.c.redis[0].host
	prim, err := d.admin.Switchover(ctx, d.target, first, []string{d.c.redis[1].host, d.c.redis[2].host}, render.RedisPort, 20*time.Second)
	if err != nil {
		t.Fatalf("moving the primary off %s: %v", first, err)
	}
	if err := d.c.waitSettled(prim, 60*time.Second); err != nil {
		d.c.dumpLogs()
		t.Fatal(err)
	}
	// The servers' readiness probes record the primary (as the kubelet runs them).
	if err := d.c.waitReady(10*time.Second, d.redisPods()...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	d.smp.reset()
	d.from = time.Now()
	d.steps = append(d.steps, fmt.Sprintf("primary moved to %s before the restart", shortHost(prim)))

	pods := d.redisPods()
	at := time.Now()
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func(p *pod) { defer wg.Done(); d.stopPod(p) }(p)
	}
	for _, s := range d.c.sentinels {
		wg.Add(1)
		go func(p *pod) { defer wg.Done(); p.proc.stop(10 * time.Second) }(s)
	}
	wg.Wait()
	d.steps = append(d.steps, fmt.Sprintf("%.1fs every server and Sentinel stopped", time.Since(d.from).Seconds()))
	time.Sleep(time.Until(at.Add(delay)))
	for _, p := range d.c.sentinels {
		// A Sentinel's runtime directory is memory-backed: a new pod starts it empty.
		d.c.wipe(p)
		d.c.start(p)
	}
	for _, p := range pods {
		d.c.start(p)
		d.restarts++
	}
	d.steps = append(d.steps, fmt.Sprintf("%.1fs every pod started again", time.Since(d.from).Seconds()))
	if err := d.c.waitReady(90*time.Second, append(append([]*pod{}, pods...), d.c.sentinels...)...); err != nil {
		d.c.dumpLogs()
		t.Fatalf("after the restart: %v", err)
	}
	firstOK, _ := d.l.firstOKAfter(at.Add(delay))
	d.steps = append(d.steps, fmt.Sprintf("first write after the restart %.1fs after the stop", firstOK.Sub(at).Seconds()))
	dc := d.finish("restart-all")
	if dc.SecondsWithoutPrimary > 20 {
		t.Errorf("restart-all: %.1fs without a primary, target at most 20", dc.SecondsWithoutPrimary)
	}
	if now, err := d.c.sentinelsPrimary(); err != nil || now != prim {
		t.Errorf("after the restart the Sentinels name %q (%v), want the primary before it, %s", now, err, prim)
	}
	for _, p := range pods {
		for _, line := range strings.Split(p.currentLog(), "\n") {
			if i := strings.Index(line, "starting as "); i >= 0 {
				t.Logf("%s: %s", p.name, line[i:])
			}
		}
	}
}

// TestDay2ScaleDownPrimary: 3 -> 5, the primary moved to the last server, then 5 -> 3.
// The scale-down must not remove the primary: it hands over to a server that stays (the
// server in between, about to go too, kept out of the election), then shrinks. One planned
// switchover, no failed write.
func TestDay2ScaleDownPrimary(t *testing.T) {
	d := newDay2(t, nil, 5)
	d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Replicas = 5 })
	d.drive(2 * time.Minute)
	last := d.c.redis[4].host
	if _, err := d.admin.Switchover(context.Background(), d.target, d.c.redis[0].host, []string{last}, render.RedisPort, 30*time.Second); err != nil {
		t.Fatalf("moving the primary to %s: %v", last, err)
	}
	if err := d.c.waitSettled(last, 60*time.Second); err != nil {
		d.c.dumpLogs()
		t.Fatal(err)
	}
	d.smp.reset()
	d.from = time.Now()
	d.rerender(func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Replicas = 3 })
	d.drive(2 * time.Minute)
	dc := d.finish("scale-down-primary")
	if len(d.c.redis) != 3 {
		t.Errorf("%d servers after scaling to 3", len(d.c.redis))
	}
	primary, err := d.c.sentinelsPrimary()
	if err != nil || d.c.redisPod(primary) == nil {
		t.Errorf("primary %q (%v) is not one of the remaining servers", primary, err)
	}
	if dc.FailedWrites != 0 || dc.PrimaryChanges != 1 {
		t.Errorf("scale-down with the primary on the last server: %d failed writes, %d primary changes; want 0 and 1", dc.FailedWrites, dc.PrimaryChanges)
	}
}
