//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// The day-2 scenario on the real cluster: the Store sample (persistence on) under the
// reference app's writers (sessionload, WAIT 1 in the app) while the operator rolls the
// servers for a maxMemory change, scales them 3 -> 5 -> 3, comes back from losing every
// store pod at once, and grows the claims. Each case is one entry of the "day2" list in
// bin/results/e2e.json, with the fields of make test-day2's bin/results/day2.json.

const (
	day2Sessions = 200
	day2State    = "/work/day2.json" // sessionload's state file in the client pod
	// Each sessionload run lasts this long; runs follow each other until the operation is
	// over (sessionload cannot be stopped early and still report).
	day2Chunk = 10 * time.Second
	// A pod's role reading counts for this long; its sampling loop reports every 0.25 s.
	day2Fresh = time.Second
)

// day2Case is one line of the day2 list.
type day2Case struct {
	Name               string `json:"name"`
	AcknowledgedWrites int    `json:"acknowledged_writes"`
	FailedWrites       int    `json:"failed_writes"`
	// Acknowledged writes seen going backwards while running, sessions unknown while
	// running, and sessions lost in the read-back at the end.
	AcknowledgedLost int `json:"acknowledged_lost"`
	// A server reporting role:master that was not one in the sample before and is not the
	// primary already known.
	PrimaryChanges int `json:"primary_changes"`
	// Servers (of those there at the start) recreated or restarted.
	StoreRestarts int `json:"store_restarts"`
	// The most servers reporting role:master (and not loading) at one sample; samples
	// every 0.25 s of every server's INFO, read in the pod by redis-cli.
	MastersSeenMax        int     `json:"masters_seen_max"`
	SecondsWithoutPrimary float64 `json:"seconds_without_primary"`
	// Beyond day2.json: the stretches in which writes were refused (failed, none
	// succeeding), their sum and the longest; the operation's own seconds; samples taken.
	RefusedWriteSeconds float64 `json:"refused_write_seconds"`
	MaxWriteGapSeconds  float64 `json:"max_write_gap_seconds"`
	// restart-all: from the deletes to the end of the longest stretch without a write.
	WritableAfterSeconds float64 `json:"writable_after_seconds,omitempty"`
	OperationSeconds     float64 `json:"operation_seconds"`
	RoleSamples          int     `json:"role_samples"`
}

// testDay2 runs the cases in order; each needs a Ready store, so a case that leaves it
// broken stops the rest.
func testDay2(t *testing.T) {
	ok := step(t, "store/day2-setup", testDay2Setup)
	for _, c := range []struct {
		name string
		f    func(t *testing.T)
	}{
		{"rollout-maxmemory", testDay2RolloutMaxMemory},
		{"scale-3-5-3", testDay2Scale},
		{"restart-all", testDay2RestartAll},
		{"grow-claims", testDay2GrowClaims},
	} {
		if ok {
			ok = step(t, "store/day2-"+c.name, c.f)
		}
	}
}

// testDay2Setup makes the scenario's own sessions, so that it runs after store/ready
// alone too (E2E_RUN='TestE2E/store/(ready|day2)').
func testDay2Setup(t *testing.T) {
	e.startClient(t, nsStore)
	e.waitSC(t, nsStore, storeSC, 3*time.Minute, "Ready=True", isReady)
	out, err := e.sessionload(context.Background(), nsStore, "create", "-urls", day2URL(), "-n", fmt.Sprint(day2Sessions),
		"-concurrency", "8", "-out", day2State)
	var c struct {
		Created     int `json:"created"`
		FailedBumps int `json:"failed_bumps"`
	}
	if jerr := json.Unmarshal([]byte(lastLine(out)), &c); jerr != nil || err != nil {
		t.Fatalf("creating sessions: %v %v: %s", err, jerr, tail(out, 5))
	}
	if c.Created != day2Sessions || c.FailedBumps > 0 {
		t.Fatalf("created %d of %d sessions (%d bumps failed)", c.Created, day2Sessions, c.FailedBumps)
	}
	logf("day2: %d sessions for the writers", c.Created)
}

func day2URL() string { return fmt.Sprintf("http://%s-web:8080", storeSC) }

// testDay2RolloutMaxMemory: a new maxMemory changes the servers' template (the config
// hash); the operator replaces the replicas, switches over once, then replaces the old
// primary. Every server runs with the new value afterwards.
func testDay2RolloutMaxMemory(t *testing.T) {
	ctx := context.Background()
	sts := &appsv1.StatefulSet{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-store"}, sts); err != nil {
		t.Fatal(err)
	}
	oldRev := sts.Status.UpdateRevision
	want := resource.MustParse("200Mi")
	c := e.day2Run(t, "rollout-maxmemory", func(t *testing.T) {
		e.patchSC(t, func(sc *sessionv1.SessionCluster) {
			if sc.Spec.Store.MaxMemory != nil && sc.Spec.Store.MaxMemory.Cmp(want) == 0 {
				want = resource.MustParse("256Mi")
			}
			sc.Spec.Store.MaxMemory = &want
		})
		e.waitRolledOut(t, oldRev, 3, 6*time.Minute)
	})
	for i := range 3 {
		pod := fmt.Sprintf("%s-store-%d", storeSC, i)
		out, err := e.kc("-n", nsStore, "exec", pod, "-c", "redis", "--", "sh", "-c",
			`redis-cli --no-auth-warning --raw ${REDISCLI_USER:+--user "$REDISCLI_USER"} -p "$REDIS_PORT" INFO memory | tr -d '\r' | sed -n 's/^maxmemory://p'`)
		if err != nil || strings.TrimSpace(out) != fmt.Sprint(want.Value()) {
			t.Errorf("%s runs with maxmemory %q, want %d: %v", pod, strings.TrimSpace(out), want.Value(), err)
		}
	}
	if c.AcknowledgedLost > 0 || c.PrimaryChanges > 1 || c.RefusedWriteSeconds > 2 || c.StoreRestarts != 3 {
		t.Errorf("rollout-maxmemory: %+v; want 0 lost, at most one primary change, at most 2 s of refused writes, 3 servers replaced", c)
	}
}

// testDay2Scale: store.replicas 3 -> 5 -> 3 changes nothing on the running servers: no
// roll, no failover, no refused write; the claims of the removed replicas are kept, as
// deleteClaim false says.
func testDay2Scale(t *testing.T) {
	ctx := context.Background()
	c := e.day2Run(t, "scale-3-5-3", func(t *testing.T) {
		for _, n := range []int32{5, 3} {
			start := time.Now()
			e.patchSC(t, func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Replicas = n })
			e.waitSC(t, nsStore, storeSC, 5*time.Minute, fmt.Sprintf("Ready with %d servers", n), func(sc *sessionv1.SessionCluster) bool {
				return isReady(sc) && sc.Status.Store != nil && sc.Status.Store.ReadyReplicas == n && sc.Status.Store.Rollout == nil &&
					e.storeServers(ctx) == int(n)
			})
			logf("day2 scale-3-5-3: %d servers ready after %.1f s", n, time.Since(start).Seconds())
		}
	})
	if c.FailedWrites > 0 || c.AcknowledgedLost > 0 || c.StoreRestarts > 0 || c.PrimaryChanges > 0 || c.MastersSeenMax > 1 {
		t.Errorf("scale-3-5-3: %+v; want no failed or lost write, no restart, no primary change", c)
	}
	// Kept claims, then removed by the test: store/delete-gc counts the sample's three.
	for _, i := range []int{3, 4} {
		pvc := &corev1.PersistentVolumeClaim{}
		name := fmt.Sprintf("%s-%s-store-%d", render.ClaimTemplateName, storeSC, i)
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: name}, pvc); err != nil {
			t.Errorf("claim %s of a removed replica: %v (deleteClaim is false: kept)", name, err)
			continue
		}
		if err := e.c.Delete(ctx, pvc); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("removing claim %s: %v", name, err)
		}
	}
}

// testDay2RestartAll deletes every server and Sentinel pod at once, as a node drain
// would: with persistence the store is writable again within 20 s of the pods coming
// back, with no acknowledged write lost.
func testDay2RestartAll(t *testing.T) {
	ctx := context.Background()
	var deletedAt time.Time
	c := e.day2Run(t, "restart-all", func(t *testing.T) {
		pods, err := e.podsOf(ctx, nsStore, storeSC)
		if err != nil {
			t.Fatal(err)
		}
		old := map[string]bool{}
		var wg sync.WaitGroup
		deletedAt = time.Now()
		for i := range pods {
			p := &pods[i]
			if c := p.Labels[render.LabelComponent]; c != render.ComponentStore && c != render.ComponentSentinel {
				continue
			}
			old[string(p.UID)] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.c.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("deleting %s: %v", p.Name, err)
				}
			}()
		}
		wg.Wait()
		logf("day2 restart-all: deleted %d server and Sentinel pods", len(old))
		err = poll(5*time.Minute, 500*time.Millisecond, func() (bool, error) {
			pods, err := e.podsOf(ctx, nsStore, storeSC)
			if err != nil {
				return false, err
			}
			n := 0
			for i := range pods {
				p := &pods[i]
				if c := p.Labels[render.LabelComponent]; c != render.ComponentStore && c != render.ComponentSentinel {
					continue
				}
				if old[string(p.UID)] || !podReady(p) {
					return false, nil
				}
				n++
			}
			sc, err := e.getSC(ctx, nsStore, storeSC)
			return err == nil && n == 6 && isReady(sc) && sc.Status.Store.ReadyReplicas == 3 && sc.Status.Store.SentinelsReady == 3, nil
		})
		if err != nil {
			t.Fatalf("the store did not come back: %v", err)
		}
		logf("day2 restart-all: every pod back and Ready after %.1f s", time.Since(deletedAt).Seconds())
	}, func(oks []time.Time, c *day2Case) {
		if resumed, ok := writesResumed(oks, deletedAt); ok {
			c.WritableAfterSeconds = secs(resumed.Sub(deletedAt))
		}
	})
	if c.AcknowledgedLost > 0 || c.SecondsWithoutPrimary > 20 || c.WritableAfterSeconds == 0 || c.WritableAfterSeconds > 20 {
		t.Errorf("restart-all: %+v; want 0 lost, at most 20 s without a primary, writable again within 20 s", c)
	}
}

// testDay2GrowClaims raises store.persistence.size: every server's claim reaches the new
// size (the local cluster's class allows expansion and its provisioner resizes), and
// status.store.claims says so, with no server restarted.
func testDay2GrowClaims(t *testing.T) {
	ctx := context.Background()
	sc, err := e.getSC(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	want := sc.Spec.Store.Persistence.Size.DeepCopy()
	want.Add(resource.MustParse("1Gi"))
	var claims *sessionv1.ClaimsStatus
	c := e.day2Run(t, "grow-claims", func(t *testing.T) {
		e.patchSC(t, func(sc *sessionv1.SessionCluster) { sc.Spec.Store.Persistence.Size = want })
		last := e.waitSC(t, nsStore, storeSC, 3*time.Minute, "status.store.claims at "+want.String(), func(sc *sessionv1.SessionCluster) bool {
			st := sc.Status.Store
			return isReady(sc) && st != nil && st.Claims != nil && st.Claims.Size == want.String() && st.Claims.Resized == 3 && st.Claims.Pending == 0
		})
		claims = last.Status.Store.Claims
	})
	logf("day2 grow-claims: status.store.claims %+v", *claims)
	if claims.Message != "" {
		t.Errorf("status.store.claims.message %q with every claim resized", claims.Message)
	}
	for i := range 3 {
		name := fmt.Sprintf("%s-%s-store-%d", render.ClaimTemplateName, storeSC, i)
		pvc := &corev1.PersistentVolumeClaim{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: name}, pvc); err != nil {
			t.Errorf("claim %s: %v", name, err)
			continue
		}
		got := pvc.Status.Capacity[corev1.ResourceStorage]
		pv := &corev1.PersistentVolume{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
			t.Errorf("volume of %s: %v", name, err)
			continue
		}
		pvCap := pv.Spec.Capacity[corev1.ResourceStorage]
		if got.Cmp(want) != 0 || pvCap.Cmp(want) != 0 {
			t.Errorf("claim %s: capacity %s, volume %s %s; want %s", name, got.String(), pv.Name, pvCap.String(), want.String())
		}
	}
	if c.FailedWrites > 0 || c.AcknowledgedLost > 0 || c.StoreRestarts > 0 || c.PrimaryChanges > 0 {
		t.Errorf("grow-claims: %+v; want no failed or lost write, no restart, no primary change", c)
	}
}

// ---------------------------------------------------------------- the harness ---

// day2Run runs op under the writers and the role sampler and records the case; after
// (optional) sees the successful writes' completion times.
func (e *env) day2Run(t *testing.T, name string, op func(t *testing.T), after ...func(oks []time.Time, c *day2Case)) day2Case {
	t.Helper()
	e.waitSC(t, nsStore, storeSC, 3*time.Minute, "Ready=True before "+name, isReady)
	before := e.serverGenerations(t)
	smp := startRoleSampler(e)
	defer smp.halt()
	load := e.startDay2Load()
	time.Sleep(3 * time.Second)

	start := time.Now()
	opOK := t.Run("operation", op)
	opSecs := secs(time.Since(start))
	time.Sleep(3 * time.Second)
	sum, oks, loadErr := load.finish()
	smp.halt()
	if loadErr != nil {
		t.Fatalf("%s: the writers: %v", name, loadErr)
	}
	v := e.day2Verify(t, name)
	c := day2Case{
		Name: name, AcknowledgedWrites: sum.OK, FailedWrites: sum.Failed,
		AcknowledgedLost: sum.WentBackwards + sum.UnknownSessions + v.Lost + v.Unverified,
		StoreRestarts:    e.serverRestarts(t, before), OperationSeconds: opSecs,
		RefusedWriteSeconds: sum.refused, MaxWriteGapSeconds: sum.MaxGapSeconds,
	}
	c.PrimaryChanges, c.MastersSeenMax, c.SecondsWithoutPrimary, c.RoleSamples = smp.result()
	for _, f := range after {
		f(oks, &c)
	}
	e.mu.Lock()
	e.res.Day2 = append(e.res.Day2, c)
	e.mu.Unlock()
	line, _ := json.Marshal(c)
	logf("day2: %s", line)
	if !opOK {
		t.FailNow()
	}
	if c.RoleSamples < int(2*time.Since(start).Seconds()) {
		t.Errorf("%s: %d role samples in %.0f s, want at least two a second", name, c.RoleSamples, time.Since(start).Seconds())
	}
	return c
}

// patchSC changes the Store SessionCluster's spec (retrying a conflict).
func (e *env) patchSC(t *testing.T, mutate func(*sessionv1.SessionCluster)) {
	t.Helper()
	ctx := context.Background()
	err := poll(30*time.Second, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		mutate(sc)
		if err := e.c.Update(ctx, sc); err != nil {
			if apierrors.IsConflict(err) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("updating SessionCluster %s: %v", storeSC, err)
	}
}

// waitRolledOut waits until the servers' StatefulSet has a revision other than oldRev,
// every one of want servers runs it and is ready, and the operator reports no rollout
// step and Ready.
func (e *env) waitRolledOut(t *testing.T, oldRev string, want int, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	var why string
	err := poll(timeout, 500*time.Millisecond, func() (bool, error) {
		sts := &appsv1.StatefulSet{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-store"}, sts); err != nil {
			return false, err
		}
		rev := sts.Status.UpdateRevision
		if sts.Status.ObservedGeneration != sts.Generation || rev == oldRev {
			why = "the StatefulSet has no new revision yet"
			return false, nil
		}
		pods, err := e.serverPods(ctx)
		if err != nil {
			return false, err
		}
		n := 0
		for i := range pods {
			if pods[i].Labels[appsv1.ControllerRevisionHashLabelKey] == rev && podReady(&pods[i]) {
				n++
			}
		}
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		why = fmt.Sprintf("%d of %d servers at %s; rollout %+v; %s", n, want, rev, sc.Status.Store.Rollout, readyMessage(sc))
		return n == want && len(pods) == want && sc.Status.Store.Rollout == nil && isReady(sc), nil
	})
	if err != nil {
		t.Fatalf("rollout: %v (%s)", err, why)
	}
}

func (e *env) serverPods(ctx context.Context) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := e.c.List(ctx, &pods, client.InNamespace(nsStore), client.MatchingLabels{render.LabelInstance: storeSC, render.LabelComponent: render.ComponentStore})
	return pods.Items, err
}

// storeServers counts the server pods that exist (terminating ones included).
func (e *env) storeServers(ctx context.Context) int {
	pods, err := e.serverPods(ctx)
	if err != nil {
		return -1
	}
	return len(pods)
}

// serverGenerations: each server pod's UID and its redis container's restarts.
func (e *env) serverGenerations(t *testing.T) map[string]string {
	t.Helper()
	pods, err := e.serverPods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods {
		out[p.Name] = podGeneration(&p)
	}
	return out
}

func podGeneration(p *corev1.Pod) string {
	var restarts int32
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "redis" {
			restarts = cs.RestartCount
		}
	}
	return fmt.Sprintf("%s/%d", p.UID, restarts)
}

// serverRestarts counts the servers of before that are gone, recreated or restarted.
func (e *env) serverRestarts(t *testing.T, before map[string]string) int {
	t.Helper()
	now := e.serverGenerations(t)
	n := 0
	for name, g := range before {
		if now[name] != g {
			n++
		}
	}
	return n
}

// day2Verify reads every session back through the app Service.
func (e *env) day2Verify(t *testing.T, name string) verifySummary {
	t.Helper()
	out, err := e.sessionload(context.Background(), nsStore, "verify", "-urls", day2URL(), "-in", day2State, "-retries", "5", "-concurrency", "8")
	var v verifySummary
	if jerr := json.Unmarshal([]byte(lastLine(out)), &v); jerr != nil {
		t.Fatalf("verify after %s: %v (%v)", name, jerr, err)
	}
	e.res.Verifications++
	e.res.SessionsLost += v.Lost
	logf("verify after %s: %d checked, %d ok, %d lost, %d unverified", name, v.Checked, v.OK, v.Lost, v.Unverified)
	if v.Checked != day2Sessions {
		t.Errorf("verify after %s: %d sessions checked, want %d", name, v.Checked, day2Sessions)
	}
	return v
}

// ---------------------------------------------------------------- writers -------

type day2Sum struct {
	OK, Failed, WentBackwards, UnknownSessions int
	MaxGapSeconds                              float64
	refused                                    float64
}

// day2Load is sessionload run after sessionload run (4 clients, 10 ms apart, through the
// app Service) until finish; each run carries the acknowledged counters of the one before
// in the state file, so a write that goes backwards across runs is seen too.
type day2Load struct {
	stop chan struct{}
	done chan struct{}
	sum  day2Sum
	oks  []time.Time
	err  error
}

func (e *env) startDay2Load() *day2Load {
	l := &day2Load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), day2Chunk+time.Minute)
			out, err := e.sessionload(ctx, nsStore, "run", "-urls", day2URL(), "-in", day2State, "-duration", day2Chunk.String(),
				"-clients", "4", "-interval", "10ms", "-timeout", "3s", "-events", "/dev/stdout")
			cancel()
			var sum struct {
				runSummary
				Outages []struct {
					Seconds float64 `json:"seconds"`
				} `json:"outages"`
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.Contains(line, `"command":"run"`) {
					_ = json.Unmarshal([]byte(line), &sum)
					continue
				}
				var ev runEvent
				if json.Unmarshal([]byte(line), &ev) == nil && ev.OK {
					l.oks = append(l.oks, ev.End)
				}
			}
			if sum.Command != "run" {
				l.err = fmt.Errorf("sessionload run: %v: %s", err, tail(out, 5))
				return
			}
			l.sum.OK += sum.OK
			l.sum.Failed += sum.Failed
			l.sum.WentBackwards += sum.WentBackwards
			l.sum.UnknownSessions += sum.UnknownSessions
			l.sum.MaxGapSeconds = max(l.sum.MaxGapSeconds, sum.MaxGapSeconds)
			for _, o := range sum.Outages {
				l.sum.refused += o.Seconds
			}
			if sum.Failed > 0 {
				logf("day2 writers: %d of %d failed in this run (%s)", sum.Failed, sum.Requests, sum.FirstError)
			}
			select {
			case <-l.stop:
				return
			default:
			}
		}
	}()
	return l
}

// finish lets the current run end and returns the totals.
func (l *day2Load) finish() (day2Sum, []time.Time, error) {
	close(l.stop)
	<-l.done
	l.sum.refused = round2(l.sum.refused)
	l.sum.MaxGapSeconds = round2(l.sum.MaxGapSeconds)
	return l.sum, l.oks, l.err
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }

// ---------------------------------------------------------------- roles ---------

// roleLoop runs in each server's redis container: its INFO role and loading lines every
// 0.25 s, then a "." (a server that does not answer reports only the "."). redis-cli
// authenticates as the operator user from the container's environment; no password
// leaves the pod. It ends by itself after about 17 minutes should its kubectl go away
// without the stream closing.
const roleLoop = `i=0; while [ $i -lt 4000 ]; do i=$((i+1)); timeout 1 redis-cli --no-auth-warning ${REDISCLI_USER:+--user "$REDISCLI_USER"} -p "$REDIS_PORT" INFO 2>/dev/null | tr -d '\r' | grep -E '^(role|loading):'; echo .; sleep 0.25; done`

// roleSampler keeps one kubectl exec streaming roleLoop per running server container and
// samples the latest readings four times a second, as test/datapath's sampler does.
type roleSampler struct {
	e      *env
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	streams map[string]bool // pod UID + container ID
	seen    map[string]roleSeen

	samples, mastersMax, changes int
	primary                      string
	prev                         map[string]bool
	without                      time.Duration
}

type roleSeen struct {
	master bool
	at     time.Time
}

func startRoleSampler(e *env) *roleSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &roleSampler{e: e, ctx: ctx, cancel: cancel, streams: map[string]bool{}, seen: map[string]roleSeen{}}
	s.refresh()
	// The first sample waits until every running server has reported once.
	_ = poll(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.seen) >= len(s.streams) && len(s.streams) > 0, nil
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				s.sample(now, now.Sub(last))
				last = now
				if i%2 == 1 {
					s.refresh()
				}
			}
		}
	}()
	return s
}

// refresh starts a stream for every server container that runs and has none.
func (s *roleSampler) refresh() {
	pods, err := s.e.serverPods(s.ctx)
	if err != nil {
		return
	}
	for i := range pods {
		p := &pods[i]
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != "redis" || cs.State.Running == nil || cs.ContainerID == "" {
				continue
			}
			key := string(p.UID) + cs.ContainerID
			s.mu.Lock()
			running := s.streams[key]
			s.streams[key] = true
			s.mu.Unlock()
			if !running {
				s.wg.Add(1)
				go s.stream(p.Name, key)
			}
		}
	}
}

func (s *roleSampler) stream(pod, key string) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.streams, key)
		s.mu.Unlock()
	}()
	cmd := exec.CommandContext(s.ctx, s.e.kubectl, "--kubeconfig", s.e.kubeconfig, "-n", nsStore, "exec", pod, "-c", "redis", "--", "sh", "-c", roleLoop)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return
	}
	if err := cmd.Start(); err != nil {
		return
	}
	sc := bufio.NewScanner(out)
	var role, loading string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "role:"):
			role = strings.TrimPrefix(line, "role:")
		case strings.HasPrefix(line, "loading:"):
			loading = strings.TrimPrefix(line, "loading:")
		case line == ".":
			s.mu.Lock()
			s.seen[pod] = roleSeen{master: role == "master" && loading == "0", at: time.Now()}
			s.mu.Unlock()
			role, loading = "", ""
		}
	}
	_ = cmd.Wait()
}

// sample counts the servers whose fresh reading says master.
func (s *roleSampler) sample(now time.Time, since time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var masters []string
	for pod, r := range s.seen {
		if r.master && now.Sub(r.at) <= day2Fresh {
			masters = append(masters, pod)
		}
	}
	sort.Strings(masters)
	s.samples++
	s.mastersMax = max(s.mastersMax, len(masters))
	if len(masters) == 0 {
		s.without += since
	}
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
}

func (s *roleSampler) halt() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// result: primary changes, most masters at once, seconds without one, samples.
func (s *roleSampler) result() (int, int, float64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changes, s.mastersMax, secs(s.without), s.samples
}
