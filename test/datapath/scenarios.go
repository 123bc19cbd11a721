//go:build datapath

package datapath

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sessionops/session-operator/internal/store"
)

var execCommand = exec.Command

// killPrimary SIGKILLs the primary the observer names, under the running writers, and
// restarts it with its boot command (as the kubelet would) at the moment kind says; then
// waits for it to rejoin as a replica and for the observer's record of the failover.
func (c *cluster) killPrimary(t *testing.T, obs *store.SentinelObserver, target store.Target, l *ledger,
	notified chan types.NamespacedName, scenario, kind string) killResult {
	t.Helper()
	ctx := context.Background()
	kr := killResult{Scenario: scenario, Kind: kind}
	o, err := obs.Observe(ctx, target)
	if err != nil || o.PrimaryHost == "" {
		t.Fatalf("observer names no primary: %+v %v", o, err)
	}
	primary := o.PrimaryHost
	if sp, err := c.sentinelsPrimary(); err != nil || sp != primary {
		t.Fatalf("observer names %s, the Sentinels %s (%v)", primary, sp, err)
	}
	if err := c.waitSettled(primary, 60*time.Second); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	// Writes are flowing.
	if err := waitFor(10*time.Second, func() bool {
		return time.Since(l.lastOKBefore(time.Now())) < 500*time.Millisecond
	}); err != nil {
		t.Fatalf("no successful write before the kill: %v", err)
	}
	p := c.redisPod(primary)
	for len(notified) > 0 {
		<-notified
	}
	kr.Killed = p.name
	killAt := time.Now()
	kr.KilledAt = killAt.UTC()
	if kind == "prestop-then-new-pod" {
		// A rolling update or a drain: the kubelet runs the preStop hook, then SIGTERM;
		// the pod is made anew, with empty volumes.
		out, err := c.runHook(p, p.container.Lifecycle.PreStop)
		kr.PreStopSeconds = time.Since(killAt).Seconds()
		kr.PreStopOutput = lastLines(out, 6)
		if err != nil {
			t.Errorf("preStop of %s: %v\n%s", p.name, err, out)
		}
		p.proc.stop(10 * time.Second)
	} else {
		p.proc.kill(syscall.SIGKILL)
	}

	restarted := false
	restart := func(wipe bool) {
		if wipe {
			c.wipe(p)
		}
		c.start(p)
		restarted = true
		kr.RestartedAfterSeconds = time.Since(killAt).Seconds()
	}
	switch kind {
	case "restart-at-once":
		restart(false)
	case "restart-at-once-new-pod", "prestop-then-new-pod":
		restart(true)
	}
	var sawNew, firstOK time.Time
	var newPrimary string
	deadline := killAt.Add(60 * time.Second)
	for {
		if kind == "restart-after-down-after" && !restarted && time.Since(killAt) >= c.downAfter+500*time.Millisecond {
			restart(false)
		}
		if sawNew.IsZero() {
			if o, err := obs.Observe(ctx, target); err == nil && o.PrimaryHost != "" && o.PrimaryHost != primary {
				sawNew, newPrimary = time.Now(), o.PrimaryHost
				if kind == "failover-then-restart" {
					restart(false)
				}
			}
		}
		if firstOK.IsZero() {
			if t1, ok := l.firstOKAfter(killAt); ok {
				firstOK = t1
			}
		}
		if !sawNew.IsZero() && !firstOK.IsZero() && restarted {
			break
		}
		if time.Now().After(deadline) {
			c.dumpLogs()
			t.Fatalf("kill of %s (%s): new primary seen %v, successful write %v, within 60s", p.name, kind, !sawNew.IsZero(), !firstOK.IsZero())
		}
		time.Sleep(100 * time.Millisecond)
	}
	kr.NewPrimary = shortHost(newPrimary)
	kr.ObserverSawNewPrimary = sawNew.Sub(killAt).Seconds()
	kr.WriteGapSeconds = firstOK.Sub(killAt).Seconds()
	kr.OutageSeconds = firstOK.Sub(l.lastOKBefore(killAt)).Seconds()
	kr.FailedWrites = l.failedBetween(killAt, firstOK)
	if kind == "prestop-then-new-pod" {
		// Writes pause while the handover runs: the first success after its start says
		// nothing, the longest stall between two successes does.
		kr.WriteGapSeconds = l.longestStall(killAt, time.Now())
		kr.FailedWrites = l.failedBetween(killAt, time.Now())
	}

	// The old primary rejoins.
	if err := c.waitReady(90*time.Second, p); err != nil {
		c.dumpLogs()
		t.Fatalf("%s after restart: %v", p.name, err)
	}
	if err := c.waitSettled(newPrimary, 60*time.Second); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	if i, err := c.info(p, "replication"); err == nil && i["role"] == "slave" {
		kr.RejoinedAsReplicaOf = shortHost(i["master_host"])
	}
	for _, line := range strings.Split(p.currentLog(), "\n") {
		if i := strings.Index(line, "starting as "); i >= 0 {
			kr.BootDecision = line[i:]
		}
	}
	kr.CameBackAsPrimary = strings.Contains(p.currentLog(), "starting as primary")

	// The observer's record of the failover.
	var sw *store.Switch
	_ = waitFor(10*time.Second, func() bool {
		o, err := obs.Observe(ctx, target)
		if err == nil && o.LastSwitch != nil && o.LastSwitch.From == primary && !o.LastSwitch.At.Before(killAt) {
			sw = o.LastSwitch
			return true
		}
		return false
	})
	if sw != nil {
		kr.Failover = &failoverResult{From: sw.From, To: sw.To, At: sw.At.UTC(), DurationSeconds: sw.Duration.Seconds(),
			KillToSwitchSeconds: sw.At.Sub(killAt).Seconds()}
		select {
		case k := <-notified:
			kr.Failover.Notified = k == target.Cluster
		case <-time.After(time.Second):
		}
	}
	kr.LongestStallSeconds = l.longestStall(killAt, time.Now())
	return kr
}

// runHook runs a lifecycle exec hook in the pod's environment, bounded by the pod's
// termination grace period.
func (c *cluster) runHook(p *pod, h *corev1.LifecycleHandler) (string, error) {
	if h == nil || h.Exec == nil {
		return "", fmt.Errorf("%s: no exec hook", p.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	argv := rewriteAll(h.Exec.Command, c.mountPaths(p.container, p))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// checkKill turns one kill's record into failures.
func (r *results) checkKill(kr killResult) {
	switch {
	case kr.Failover == nil:
		r.fail("kill of %s: the observer recorded no failover", kr.Killed)
	case shortHost(kr.Failover.From) != kr.Killed || shortHost(kr.Failover.To) != kr.NewPrimary:
		r.fail("kill of %s: the observer recorded %s -> %s, the Sentinels promoted %s", kr.Killed, kr.Failover.From, kr.Failover.To, kr.NewPrimary)
	case kr.Failover.DurationSeconds <= 0:
		r.fail("kill of %s: the observer measured no failover duration", kr.Killed)
	case !kr.Failover.Notified:
		r.fail("kill of %s: the observer's Notify did not fire", kr.Killed)
	}
	if kr.CameBackAsPrimary {
		r.fail("kill of %s (%s): it came back as a primary", kr.Killed, kr.Kind)
	}
	if kr.RejoinedAsReplicaOf != kr.NewPrimary {
		r.fail("kill of %s: rejoined as replica of %q, want %s", kr.Killed, kr.RejoinedAsReplicaOf, kr.NewPrimary)
	}
}

// restartWatchedSentinel kills a Sentinel the observer is subscribed to (the path of a
// restarted Sentinel's boot script), checks that the observer keeps its other
// subscriptions and subscribes again once the Sentinel is back.
func (c *cluster) restartWatchedSentinel(t *testing.T, obs *store.SentinelObserver, key types.NamespacedName, primary string) *sentinelRestart {
	t.Helper()
	watched := obs.Watching(key)
	if len(watched) != len(c.sentinels) {
		t.Fatalf("observer subscribed to %v, want every Sentinel", watched)
	}
	host, _, _ := net.SplitHostPort(watched[0])
	var s *pod
	for _, p := range c.sentinels {
		if p.host == host {
			s = p
		}
	}
	if s == nil {
		t.Fatalf("observer watches %q, not a Sentinel of the store", watched[0])
	}
	sr := &sentinelRestart{Killed: s.name}
	at := time.Now()
	s.proc.kill(syscall.SIGKILL)
	if err := waitFor(15*time.Second, func() bool { return len(obs.Watching(key)) == len(c.sentinels)-1 }); err != nil {
		t.Fatalf("observer still subscribed to the dead Sentinel %s: %v", s.name, err)
	}
	sr.UnsubscribedSeconds = time.Since(at).Seconds()
	at = time.Now()
	c.start(s)
	if err := c.waitReady(60*time.Second, s); err != nil {
		c.dumpLogs()
		t.Fatalf("restarted sentinel: %v", err)
	}
	sr.ReadySeconds = time.Since(at).Seconds()
	if err := waitFor(15*time.Second, func() bool { return len(obs.Watching(key)) == len(c.sentinels) }); err != nil {
		t.Fatalf("observer did not subscribe again to the restarted Sentinel %s: %v", s.name, err)
	}
	sr.ResubscribedSeconds = time.Since(at).Seconds()
	if err := c.waitSettled(primary, 60*time.Second); err != nil {
		c.dumpLogs()
		t.Fatalf("after the sentinel restart: %v", err)
	}
	t.Logf("sentinel %s killed: observer dropped it in %.2fs; restarted, ready in %.1fs, subscribed again in %.1fs",
		s.name, sr.UnsubscribedSeconds, sr.ReadySeconds, sr.ResubscribedSeconds)
	return sr
}

// restartAllSentinels kills every Sentinel and starts them all again at once: no
// Sentinel can tell a booting one the primary, so their boot script must find it from the
// servers themselves (peer_master), and after failovers it is not the first server.
func (c *cluster) restartAllSentinels(t *testing.T, obs *store.SentinelObserver, target store.Target, l *ledger) *sentinelsRestart {
	t.Helper()
	o, err := obs.Observe(context.Background(), target)
	if err != nil || o.PrimaryHost == "" {
		t.Fatalf("observer names no primary: %+v %v", o, err)
	}
	primary := o.PrimaryHost
	if err := c.waitSettled(primary, 60*time.Second); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	sr := &sentinelsRestart{Primary: shortHost(primary)}
	at := time.Now()
	for _, s := range c.sentinels {
		s.proc.kill(syscall.SIGKILL)
	}
	if err := waitFor(15*time.Second, func() bool { return len(obs.Watching(target.Cluster)) == 0 }); err != nil {
		t.Fatalf("observer still subscribed to dead Sentinels: %v", obs.Watching(target.Cluster))
	}
	for _, s := range c.sentinels {
		c.start(s)
	}
	if err := c.waitReady(90*time.Second, c.sentinels...); err != nil {
		c.dumpLogs()
		t.Fatalf("sentinels restarted together: %v", err)
	}
	sr.ReadySeconds = time.Since(at).Seconds()
	for _, s := range c.sentinels {
		for _, line := range strings.Split(s.currentLog(), "\n") {
			if i := strings.Index(line, "monitoring "); i >= 0 {
				sr.BootDecisions = append(sr.BootDecisions, s.name+": "+line[i:])
			}
		}
	}
	got, err := c.sentinelsPrimary()
	sr.SentinelsName = shortHost(got)
	if err != nil || got != primary {
		t.Errorf("after restarting every Sentinel they name %q (%v), the primary is %s", got, err, primary)
	}
	if err := c.waitSettled(primary, 60*time.Second); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	if err := waitFor(15*time.Second, func() bool { return len(obs.Watching(target.Cluster)) == len(c.sentinels) }); err != nil {
		t.Fatalf("observer did not subscribe again: %v", obs.Watching(target.Cluster))
	}
	sr.Seconds = time.Since(at).Seconds()
	sr.FailedWrites = l.failedBetween(at, time.Now())
	t.Logf("every sentinel restarted at once: they named %s again (primary %s), ready in %.1fs, %d writes failed meanwhile",
		sr.SentinelsName, sr.Primary, sr.ReadySeconds, sr.FailedWrites)
	return sr
}

// observerConnections counts connections named by the observer on every server and
// Sentinel.
func (c *cluster) observerConnections() int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	n := 0
	for _, p := range c.redis {
		r := c.redisClient(p)
		if list, err := r.ClientList(ctx).Result(); err == nil {
			n += clientsNamed(list, store.DefaultClientName)
		}
		r.Close()
	}
	for _, p := range c.sentinels {
		s := c.sentinelClient(p)
		cmd := redis.NewStringCmd(ctx, "CLIENT", "LIST")
		if err := s.Process(ctx, cmd); err == nil {
			n += clientsNamed(cmd.Val(), store.DefaultClientName)
		}
		s.Close()
	}
	return n
}

// observerGoroutines counts goroutines running the observer's or go-redis's code.
func observerGoroutines() int { return countGoroutines(false) }

// storeGoroutines is observerGoroutines without the observer's one loop that reads every
// subscription: it serves all stores and ends with Close, not with a store's Forget.
func storeGoroutines() int { return countGoroutines(true) }

func countGoroutines(skipReaders bool) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if skipReaders && bytes.Contains(g, []byte("internal/store.(*epollReaders).loop")) {
			continue
		}
		if bytes.Contains(g, []byte("session-operator/internal/store.")) || bytes.Contains(g, []byte("github.com/redis/go-redis/")) {
			n++
		}
	}
	return n
}

// checkObserverLeaks: Forget, and later Close, leave no connection and no goroutine.
func (c *cluster) checkObserverLeaks(t *testing.T, obs *store.SentinelObserver, target store.Target, res *results) {
	or := &res.Observer
	or.ConnectionsWhileUsed = c.observerConnections()
	or.GoroutinesBefore = observerGoroutines()
	if or.ConnectionsWhileUsed == 0 {
		res.fail("observer: no connection named %s seen while in use; the leak check proves nothing", store.DefaultClientName)
	}
	obs.Forget(target.Cluster)
	_ = waitFor(5*time.Second, func() bool { return c.observerConnections() == 0 && storeGoroutines() == 0 })
	or.ConnectionsAfterForget = c.observerConnections()
	or.GoroutinesAfterForget = storeGoroutines()
	if len(obs.Watching(target.Cluster)) != 0 {
		res.fail("observer: still watching after Forget")
	}
	if _, err := obs.Observe(context.Background(), target); err != nil {
		res.fail("observer: Observe after Forget: %v", err)
	}
	_ = obs.Close()
	_ = waitFor(5*time.Second, func() bool { return c.observerConnections() == 0 && observerGoroutines() == 0 })
	or.GoroutinesAfterClose = observerGoroutines()
	closeConns := c.observerConnections()
	if or.ConnectionsAfterForget != 0 || closeConns != 0 {
		res.fail("observer: %d connections left after Forget, %d after Close", or.ConnectionsAfterForget, closeConns)
	}
	if or.GoroutinesAfterForget != 0 || or.GoroutinesAfterClose != 0 {
		res.fail("observer: %d goroutines left after Forget, %d after Close", or.GoroutinesAfterForget, or.GoroutinesAfterClose)
	}
	t.Logf("observer: %d connections and %d goroutines while in use; after Forget %d/%d, after Close %d/%d",
		or.ConnectionsWhileUsed, or.GoroutinesBefore, or.ConnectionsAfterForget, or.GoroutinesAfterForget, closeConns, or.GoroutinesAfterClose)
}
