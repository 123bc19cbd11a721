//go:build datapath

package datapath

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// Sizes of the run; small enough for a shared two-core machine, large enough to mean
// something.
const (
	sessionsCreated = 1200 // scenario 1: at least 1000
	appInstances    = 3
	writerClients   = 8
	writerSessions  = 160 // the share of the sessions the writers bump
	writerPause     = 5 * time.Millisecond
	failoverKills   = 3 // scenario 2: SIGKILL, failover, then the old primary restarts
)

type failoverResult struct {
	From            string    `json:"from"`
	To              string    `json:"to"`
	At              time.Time `json:"at"`
	DurationSeconds float64   `json:"duration_seconds"`
	// KillToSwitchSeconds: from the harness's SIGKILL to the switch the observer recorded.
	KillToSwitchSeconds float64 `json:"kill_to_switch_seconds"`
	// Notified: the observer's Notify hook fired for this switch.
	Notified bool `json:"notified"`
}

type killResult struct {
	Scenario string `json:"scenario"`
	// Kind: failover-then-restart (the old primary restarts once Sentinel has promoted
	// another), restart-at-once (a container restart, same volumes, before down-after),
	// restart-at-once-new-pod (volumes wiped too), restart-after-down-after (same volumes).
	Kind                  string          `json:"kind"`
	Killed                string          `json:"killed"`
	NewPrimary            string          `json:"new_primary"`
	KilledAt              time.Time       `json:"killed_at"`
	RestartedAfterSeconds float64         `json:"restarted_after_seconds"`
	WriteGapSeconds       float64         `json:"write_gap_seconds"`
	OutageSeconds         float64         `json:"outage_seconds"`        // last success before the kill to the first after it
	LongestStallSeconds   float64         `json:"longest_stall_seconds"` // between two successful writes, until the old primary rejoined
	FailedWrites          int             `json:"failed_writes"`
	ObserverSawNewPrimary float64         `json:"observer_saw_new_primary_seconds"` // after the kill
	Failover              *failoverResult `json:"failover,omitempty"`
	RejoinedAsReplicaOf   string          `json:"rejoined_as_replica_of"`
	BootDecision          string          `json:"boot_decision"`
	CameBackAsPrimary     bool            `json:"came_back_as_primary"`
	PreStopSeconds        float64         `json:"prestop_seconds,omitempty"`
	PreStopOutput         string          `json:"prestop_output,omitempty"`
}

type results struct {
	Started                     time.Time         `json:"started"`
	Seconds                     float64           `json:"seconds"`
	RedisVersion                string            `json:"redis_version"`
	Servers                     int               `json:"servers"`
	Sentinels                   int               `json:"sentinels"`
	Quorum                      int               `json:"quorum"`
	DownAfterSeconds            float64           `json:"down_after_seconds"`
	WriteGapLimitSeconds        float64           `json:"write_gap_limit_seconds"`
	AppInstances                int               `json:"app_instances"`
	WriterClients               int               `json:"writer_clients"`
	AcknowledgedWrites          int               `json:"acknowledged_writes"`
	AcknowledgedLost            int               `json:"acknowledged_lost"`
	WriteAttempts               int               `json:"write_attempts"`
	FailedWrites                int               `json:"failed_writes"`
	WriteGapSeconds             float64           `json:"write_gap_seconds"`
	AppInstanceLossSessions     int               `json:"app_instance_loss_sessions"`
	AppInstanceLossSessionsLost int               `json:"app_instance_loss_sessions_lost"`
	SessionsChecked             int               `json:"sessions_checked"`
	SessionsLost                int               `json:"sessions_lost"`
	Kills                       []killResult      `json:"kills"`
	RestartsAsPrimary           int               `json:"restarts_as_primary"`
	KeysPerServer               map[string]int64  `json:"keys_per_server"`
	SentinelRestart             *sentinelRestart  `json:"sentinel_restart,omitempty"`
	AllSentinelsRestart         *sentinelsRestart `json:"all_sentinels_restart,omitempty"`
	Observer                    observerResult    `json:"observer"`
	Pass                        bool              `json:"pass"`
	Failures                    []string          `json:"failures"`
}

type sentinelRestart struct {
	Killed              string  `json:"killed"`
	UnsubscribedSeconds float64 `json:"observer_unsubscribed_seconds"`
	ReadySeconds        float64 `json:"ready_seconds"`
	ResubscribedSeconds float64 `json:"observer_resubscribed_seconds"`
}

type sentinelsRestart struct {
	Primary       string   `json:"primary"`
	SentinelsName string   `json:"sentinels_name"`
	BootDecisions []string `json:"boot_decisions"`
	ReadySeconds  float64  `json:"ready_seconds"`
	Seconds       float64  `json:"seconds"`
	FailedWrites  int      `json:"failed_writes"`
}

type observerResult struct {
	PrimaryReported        bool             `json:"primary_reported"`
	SentinelsReachable     int              `json:"sentinels_reachable"`
	Keys                   int64            `json:"keys"`
	Failovers              []failoverResult `json:"failovers"`
	ConnectionsWhileUsed   int              `json:"connections_while_used"`
	ConnectionsAfterForget int              `json:"connections_after_forget"`
	GoroutinesBefore       int              `json:"goroutines_before"`
	GoroutinesAfterForget  int              `json:"goroutines_after_forget"`
	GoroutinesAfterClose   int              `json:"goroutines_after_close"`
}

func resultsDir(t testing.TB) string {
	dir := os.Getenv("DATAPATH_RESULTS_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin", "results")
	}
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

func (r *results) fail(format string, a ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, a...))
}

// TestDataPath is the data-path harness (make test-datapath).
func TestDataPath(t *testing.T) {
	res := &results{Started: time.Now().UTC(), Failures: []string{}, KeysPerServer: map[string]int64{}}
	outDir := resultsDir(t)
	c := newCluster(t)
	res.DownAfterSeconds = c.downAfter.Seconds()
	res.WriteGapLimitSeconds = (c.downAfter + 3*time.Second).Seconds()
	spec := c.sc.Spec.WithDefaults()
	res.Servers, res.Sentinels, res.Quorum = len(c.redis), len(c.sentinels), int(spec.Store.Sentinel.Quorum)
	res.AppInstances, res.WriterClients = appInstances, writerClients
	l := newLedger()

	// Whatever happens, the results file is written and the summary printed.
	defer func() {
		res.Seconds = time.Since(res.Started).Seconds()
		res.AcknowledgedWrites, res.AcknowledgedLost = l.counts()
		for _, e := range l.events {
			if e.Op == "bump" || e.Op == "login" {
				res.WriteAttempts++
				if !e.OK {
					res.FailedWrites++
				}
			}
		}
		if res.AcknowledgedLost > 0 {
			res.fail("%d acknowledged writes lost", res.AcknowledgedLost)
		}
		if t.Failed() && len(res.Failures) == 0 {
			res.fail("the harness failed before finishing (see the test log)")
		}
		res.Pass = len(res.Failures) == 0 && !t.Failed()
		raw, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(filepath.Join(outDir, "datapath.json"), append(raw, '\n'), 0o644); err != nil {
			t.Errorf("writing results: %v", err)
		}
		if err := l.writeEvents(filepath.Join(outDir, "datapath-events.jsonl")); err != nil {
			t.Errorf("writing events: %v", err)
		}
		verdict := "PASS"
		if !res.Pass {
			verdict = "FAIL"
		}
		summary := fmt.Sprintf("datapath: %s acknowledged_writes=%d acknowledged_lost=%d write_gap_seconds=%.2f (limit %.1f, %d kills) "+
			"app_instance_loss_sessions_lost=%d/%d sessions_lost=%d/%d failovers_observed=%d down_after_seconds=%g -> %s\n",
			verdict, res.AcknowledgedWrites, res.AcknowledgedLost, res.WriteGapSeconds, res.WriteGapLimitSeconds, len(res.Kills),
			res.AppInstanceLossSessionsLost, res.AppInstanceLossSessions, res.SessionsLost, res.SessionsChecked,
			len(res.Observer.Failovers), res.DownAfterSeconds, filepath.Join(outDir, "datapath.json"))
		fmt.Print(summary)
		_ = os.WriteFile(filepath.Join(outDir, "datapath.summary"), []byte(summary), 0o644)
		for _, f := range res.Failures {
			t.Errorf("%s", f)
		}
	}()

	res.RedisVersion = redisVersion()

	// The store, exactly as rendered.
	start := time.Now()
	first := c.startSettledStore()
	t.Logf("store up and settled in %.1fs, primary %s", time.Since(start).Seconds(), first)

	// The operator's observer, against the real Sentinels.
	key := types.NamespacedName{Namespace: c.sc.Namespace, Name: c.sc.Name}
	obs := store.NewSentinelObserver(4, time.Second)
	notified := make(chan types.NamespacedName, 64)
	obs.Notify = func(k types.NamespacedName) {
		select {
		case notified <- k:
		default:
		}
	}
	t.Cleanup(func() { _ = obs.Close() })
	target := store.Target{Cluster: key, MasterName: c.names.MasterName(), Sentinels: c.sentinelAddrs(), Username: render.UserOperator, Password: harnessInternal.Operator}
	ctx := context.Background()
	o, err := obs.Observe(ctx, target)
	if err != nil || o.PrimaryHost != first || o.SentinelsReachable != len(c.sentinels) {
		t.Fatalf("observer: %+v, %v; want primary %s and %d sentinels", o, err, first, len(c.sentinels))
	}
	res.Observer.PrimaryReported = true
	res.Observer.SentinelsReachable = o.SentinelsReachable
	if err := waitFor(5*time.Second, func() bool { return len(obs.Watching(key)) == len(c.sentinels) }); err != nil {
		t.Fatalf("observer subscribed to %v, want every Sentinel", obs.Watching(key))
	}

	// Scenario 0: a Sentinel dies and comes back (the boot path of a restarted Sentinel;
	// the observer's subscription to it ends and is made again).
	res.SentinelRestart = c.restartWatchedSentinel(t, obs, key, first)

	// The reference app.
	c.addApps(appInstances)
	for _, p := range c.apps {
		c.startApp(p)
	}

	// Scenario 1: app instance loss.
	runScenario1(t, c, l, res)

	// Scenarios 2 and 3 under continuous writes.
	ids := l.ids()
	w := startWriters(l, ids[:writerSessions], c.appURLs(), writerClients, writerPause)
	stopped := false
	defer func() {
		if !stopped {
			w.halt()
		}
	}()
	time.Sleep(2 * time.Second)
	kinds := []struct{ scenario, kind string }{}
	for i := 0; i < failoverKills; i++ {
		kinds = append(kinds, struct{ scenario, kind string }{"primary-loss", "failover-then-restart"})
	}
	kinds = append(kinds,
		struct{ scenario, kind string }{"restarted-primary", "restart-at-once"},
		struct{ scenario, kind string }{"restarted-primary", "restart-at-once-new-pod"},
		struct{ scenario, kind string }{"restarted-primary", "restart-after-down-after"},
		struct{ scenario, kind string }{"planned-handover", "prestop-then-new-pod"},
	)
	for i, k := range kinds {
		if k.kind == "prestop-then-new-pod" {
			// Between the failovers and the handover: every Sentinel restarted at once.
			res.AllSentinelsRestart = c.restartAllSentinels(t, obs, target, l)
			if t.Failed() {
				return
			}
		}
		kr := c.killPrimary(t, obs, target, l, notified, k.scenario, k.kind)
		res.Kills = append(res.Kills, kr)
		if kr.Failover != nil {
			res.Observer.Failovers = append(res.Observer.Failovers, *kr.Failover)
		}
		res.WriteGapSeconds = max(res.WriteGapSeconds, kr.WriteGapSeconds)
		if kr.CameBackAsPrimary {
			res.RestartsAsPrimary++
		}
		res.checkKill(kr)
		t.Logf("kill %d/%d (%s): %s -> %s, write gap %.2fs, failover %s, restarted %.1fs after the kill as replica of %s",
			i+1, len(kinds), k.kind, kr.Killed, kr.NewPrimary, kr.WriteGapSeconds, describeFailover(kr.Failover),
			kr.RestartedAfterSeconds, kr.RejoinedAsReplicaOf)
		if t.Failed() {
			return
		}
	}
	time.Sleep(time.Second)
	w.halt()
	stopped = true

	// Everything back, through every instance.
	ids = l.ids()
	_, lostBefore := l.counts()
	unverified, err := readBack(ctx, l, ids, c.appURLs(), 16)
	if unverified > 0 {
		res.fail("%d sessions could not be read back: %v", unverified, err)
	}
	res.SessionsChecked = len(ids)
	res.SessionsLost = l.sessionsLost()
	_, lostAfter := l.counts()
	t.Logf("read back %d sessions: %d acknowledged values lost at the final read", len(ids), lostAfter-lostBefore)
	if res.SessionsLost > 0 {
		res.fail("%d sessions lost", res.SessionsLost)
	}

	// The data set survived on every server.
	var keys []int64
	for _, p := range c.redis {
		n, err := c.dbsize(p)
		if err != nil {
			res.fail("%s: DBSIZE: %v", p.name, err)
			continue
		}
		res.KeysPerServer[p.name] = n
		keys = append(keys, n)
	}
	for i, n := range keys {
		if n != int64(len(ids)) {
			res.fail("%s holds %d keys, want %d (one per session)", c.redis[i].name, n, len(ids))
		}
	}
	if res.WriteGapSeconds > res.WriteGapLimitSeconds {
		res.fail("worst write gap %.2fs exceeds down-after + 3s = %.1fs", res.WriteGapSeconds, res.WriteGapLimitSeconds)
	}

	// The observer's sample of the primary, then no leak once it forgets the store.
	if o, err := obs.Observe(ctx, target); err == nil {
		res.Observer.Keys = o.Keys
		if o.Keys != int64(len(ids)) {
			res.fail("observer sampled %d keys on the primary, want %d", o.Keys, len(ids))
		}
	}
	c.checkObserverLeaks(t, obs, target, res)
}

func describeFailover(f *failoverResult) string {
	if f == nil {
		return "not observed"
	}
	return fmt.Sprintf("%s -> %s in %.2fs (notified %v)", shortHost(f.From), shortHost(f.To), f.DurationSeconds, f.Notified)
}

func shortHost(h string) string {
	s, _, _ := strings.Cut(h, ".")
	return s
}

func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// redisVersion is the version redis-server reports ("7.0.15").
func redisVersion() string {
	out, err := execCommand("redis-server", "--version").Output()
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// runScenario1: sessions spread over every instance; one instance is SIGKILLed; every
// session is read through another one.
func runScenario1(t *testing.T, c *cluster, l *ledger, res *results) {
	ctx := context.Background()
	start := time.Now()
	if err := createSessions(ctx, l, c.appURLs(), sessionsCreated, 12); err != nil {
		t.Fatalf("creating sessions: %v", err)
	}
	t.Logf("scenario 1: %d sessions created over %d instances in %.1fs", sessionsCreated, len(c.apps), time.Since(start).Seconds())
	victim, reader := c.apps[0], c.apps[1]
	victim.proc.kill(syscall.SIGKILL)
	ids := l.ids()
	lostBefore := l.sessionsLost()
	unverified, err := readBack(ctx, l, ids, []string{reader.url()}, 12)
	if unverified > 0 {
		res.fail("scenario 1: %d sessions could not be read: %v", unverified, err)
	}
	res.AppInstanceLossSessions = len(ids)
	res.AppInstanceLossSessionsLost = l.sessionsLost() - lostBefore
	t.Logf("scenario 1: killed %s, read %d sessions through %s: %d lost", victim.name, len(ids), reader.name, res.AppInstanceLossSessionsLost)
	if res.AppInstanceLossSessionsLost > 0 {
		res.fail("scenario 1: %d sessions lost with an app instance", res.AppInstanceLossSessionsLost)
	}
	// The Deployment replaces the instance.
	c.startApp(victim)
}
