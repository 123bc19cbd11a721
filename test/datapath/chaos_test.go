//go:build datapath

package datapath

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// chaosResults is bin/results/datapath-chaos.json: what the operator's observer and the
// rendered readiness probe said while the primary was frozen (SIGSTOP) and resumed.
type chaosResults struct {
	Pass             bool     `json:"pass"`
	Failures         []string `json:"failures"`
	DownAfterSeconds float64  `json:"down_after_seconds"`
	// SIGSTOP of the primary to the observer's Health.PrimaryDown (limit down-after + 1 s),
	// and to the first Sentinel event (HealthEvents) that woke the store (limit down-after
	// + 2 s: a Sentinel's +sdown comes down-after after its first unanswered ping, which it
	// sends up to a second after the freeze).
	PrimaryDownReportedSeconds float64 `json:"primary_down_reported_seconds"`
	PrimaryDownReason          string  `json:"primary_down_reason"`
	LimitSeconds               float64 `json:"limit_seconds"`
	HealthEventWakeSeconds     float64 `json:"health_event_wake_seconds"`
	WakeLimitSeconds           float64 `json:"wake_limit_seconds"`
	// SIGSTOP to the Sentinels naming another primary.
	FailedOverSeconds float64 `json:"failed_over_seconds"`
	// SIGCONT to Health.OtherPrimaries naming the old primary (it still says role:master).
	TwoMastersReportedSeconds float64 `json:"two_masters_reported_seconds"`
	// The old primary's rendered readiness probe while it said role:master after SIGCONT.
	StaleMasterProbe       string `json:"stale_master_probe"`
	StaleMasterProbeFailed bool   `json:"stale_master_probe_failed"`
	// SIGCONT to the old primary a replica again and Health clean.
	ConvertedSeconds float64 `json:"converted_seconds"`
}

// TestChaosFrozenPrimary freezes the primary with SIGSTOP under the operator's observer:
// Health must report it down within down-after + 1 s (and a Sentinel event must wake the
// store within down-after + 2 s), then, once the Sentinels promoted a replica and the old primary
// resumed still saying role:master, report it among OtherPrimaries while its readiness
// probe fails, until Sentinel turns it into a replica.
func TestChaosFrozenPrimary(t *testing.T) {
	res := &chaosResults{Failures: []string{}}
	outDir := resultsDir(t)
	c := newCluster(t)
	res.DownAfterSeconds = c.downAfter.Seconds()
	limit := c.downAfter + time.Second
	res.LimitSeconds = limit.Seconds()
	wakeLimit := c.downAfter + 2*time.Second
	res.WakeLimitSeconds = wakeLimit.Seconds()
	fail := func(format string, a ...any) {
		res.Failures = append(res.Failures, fmt.Sprintf(format, a...))
		t.Errorf(format, a...)
	}
	defer func() {
		res.Pass = len(res.Failures) == 0 && !t.Failed()
		raw, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(filepath.Join(outDir, "datapath-chaos.json"), append(raw, '\n'), 0o644); err != nil {
			t.Errorf("writing results: %v", err)
		}
		t.Logf("datapath-chaos: %s", raw)
	}()

	primary := c.startSettledStore()
	key := types.NamespacedName{Namespace: c.sc.Namespace, Name: c.sc.Name}
	obs := store.NewSentinelObserver(4, time.Second)
	var wakeMu sync.Mutex
	var wakes []time.Time
	obs.Notify = func(k types.NamespacedName) {
		if k == key {
			wakeMu.Lock()
			wakes = append(wakes, time.Now())
			wakeMu.Unlock()
		}
	}
	t.Cleanup(func() { _ = obs.Close() })
	target := store.Target{Cluster: key, MasterName: c.names.MasterName(), Sentinels: c.sentinelAddrs(),
		Username: render.UserOperator, Password: harnessInternal.Operator}
	ctx := context.Background()
	observe := func() store.Observation {
		o, _ := obs.Observe(ctx, target)
		return o
	}
	o := observe()
	if o.PrimaryHost != primary || o.Health.Agreeing != len(c.sentinels) || o.Health.PrimaryDown != "" || len(o.Health.OtherPrimaries) > 0 {
		t.Fatalf("settled store: %+v, want primary %s with every Sentinel agreeing", o, primary)
	}
	if err := waitFor(5*time.Second, func() bool { return len(obs.Watching(key)) == len(c.sentinels) }); err != nil {
		t.Fatalf("observer subscribed to %v, want every Sentinel", obs.Watching(key))
	}
	old := c.redisPod(primary)
	defer old.proc.kill(syscall.SIGCONT)

	// Freeze.
	old.proc.kill(syscall.SIGSTOP)
	frozenAt := time.Now()
	var newPrimary string
	deadline := frozenAt.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		o = observe()
		if o.PrimaryHost == primary && o.Health.PrimaryDown != "" && res.PrimaryDownReportedSeconds == 0 {
			res.PrimaryDownReportedSeconds = time.Since(frozenAt).Seconds()
			res.PrimaryDownReason = o.Health.PrimaryDown
			t.Logf("%.2fs after SIGSTOP: primary %s down: %s", res.PrimaryDownReportedSeconds, shortHost(primary), o.Health.PrimaryDown)
		}
		if o.PrimaryHost != "" && o.PrimaryHost != primary && o.Health.Agreeing == len(c.sentinels) {
			newPrimary = o.PrimaryHost
			res.FailedOverSeconds = time.Since(frozenAt).Seconds()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wakeMu.Lock()
	for _, w := range wakes {
		if w.After(frozenAt) {
			res.HealthEventWakeSeconds = w.Sub(frozenAt).Seconds()
			break
		}
	}
	wakeMu.Unlock()
	switch {
	case res.PrimaryDownReportedSeconds == 0:
		fail("the observer never reported the frozen primary %s down", shortHost(primary))
	case res.PrimaryDownReportedSeconds > limit.Seconds():
		fail("the frozen primary reported down after %.2fs, limit %s", res.PrimaryDownReportedSeconds, limit)
	}
	if res.HealthEventWakeSeconds == 0 || res.HealthEventWakeSeconds > wakeLimit.Seconds() {
		fail("no Sentinel event woke the store within %s of the freeze (first after %.2fs)", wakeLimit, res.HealthEventWakeSeconds)
	}
	if newPrimary == "" {
		c.dumpLogs()
		t.Fatalf("no failover away from the frozen primary in 60s: %+v", o)
	}
	t.Logf("%.2fs after SIGSTOP: every Sentinel names %s", res.FailedOverSeconds, shortHost(newPrimary))

	// Resume: the old primary says role:master until a Sentinel converts it.
	old.proc.kill(syscall.SIGCONT)
	resumedAt := time.Now()
	probed := false
	deadline = resumedAt.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		o = observe()
		if res.TwoMastersReportedSeconds == 0 && slices.Contains(o.Health.OtherPrimaries, primary) {
			res.TwoMastersReportedSeconds = time.Since(resumedAt).Seconds()
			t.Logf("%.2fs after SIGCONT: OtherPrimaries %v", res.TwoMastersReportedSeconds, o.Health.OtherPrimaries)
		}
		if !probed {
			if i, err := c.info(old, "replication"); err == nil && i["role"] == "master" {
				err := c.probe(old, old.readyProbe)
				if i2, err2 := c.info(old, "replication"); err2 == nil && i2["role"] == "master" {
					probed = true
					res.StaleMasterProbeFailed = err != nil
					if err != nil {
						res.StaleMasterProbe = lastLines(err.Error(), 1)
					} else {
						res.StaleMasterProbe = "passed"
					}
				}
			}
		}
		i, err := c.info(old, "replication")
		if err == nil && i["role"] == "slave" && i["master_host"] == newPrimary && i["master_link_status"] == "up" &&
			o.PrimaryHost == newPrimary && len(o.Health.OtherPrimaries) == 0 && o.Health.PrimaryDown == "" {
			res.ConvertedSeconds = time.Since(resumedAt).Seconds()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res.TwoMastersReportedSeconds == 0 {
		fail("the resumed old primary %s was never reported among OtherPrimaries", shortHost(primary))
	}
	switch {
	case !probed:
		fail("the resumed old primary was never probed while it said role:master")
	case !res.StaleMasterProbeFailed:
		fail("the readiness probe passed the stale master %s while the Sentinels name %s", shortHost(primary), shortHost(newPrimary))
	case !strings.Contains(res.StaleMasterProbe, "sentinels name "+newPrimary):
		fail("the stale master's probe failed for another reason: %s", res.StaleMasterProbe)
	}
	if res.ConvertedSeconds == 0 {
		c.dumpLogs()
		fail("the old primary was not a replica of %s with a clean Health within 60s of SIGCONT: %+v", shortHost(newPrimary), o)
	}
	// The new primary's own probe passes: the Sentinels name it.
	if err := c.waitReady(15*time.Second, c.redisPod(newPrimary)); err != nil {
		fail("the new primary's readiness probe: %v", err)
	}
}
