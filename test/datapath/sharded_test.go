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

	"github.com/sessionops/session-operator/internal/rediscluster"
)

// The sharded store's cases (bin/results/datapath-cluster.json): a shard primary killed
// under writes, a server back on a new address, and the shard count raised 3 -> 4 and
// lowered back under writes. The ledger is the Sentinel cases' one: a write is
// acknowledged when the app answers 200 after WAIT 1, and any acknowledged counter value
// that a later write or read shows rolled back counts as lost.

const (
	shardedSessions = 240
	shardedWriters  = 8
	shardedPause    = 5 * time.Millisecond
	// shardedInterval is how often the harness calls Reconcile while it reports Busy (the
	// controller's requeue).
	shardedInterval = time.Second
)

type clusterCase struct {
	Name                 string  `json:"name"`
	AcknowledgedWrites   int     `json:"acknowledged_writes"`
	AcknowledgedLost     int     `json:"acknowledged_lost"`
	FailedWrites         int     `json:"failed_writes"`
	WriteGapSeconds      float64 `json:"write_gap_seconds"`
	WriteGapLimitSeconds float64 `json:"write_gap_limit_seconds,omitempty"`
	Seconds              float64 `json:"seconds"`
	SessionsUnreadable   int     `json:"sessions_unreadable"`
	// Detail is what the case saw on the way (node IDs, calls, durations).
	Detail map[string]any `json:"detail"`
}

type clusterResults struct {
	Started                   time.Time `json:"started"`
	Seconds                   float64   `json:"seconds"`
	RedisVersion              string    `json:"redis_version"`
	ClusterNodeTimeoutSeconds float64   `json:"cluster_node_timeout_seconds"`
	PerShard                  int       `json:"servers_per_shard"`
	AppInstances              int       `json:"app_instances"`
	WriterClients             int       `json:"writer_clients"`
	// Load average (1, 5, 15 min) before and after: the machine may be shared, and Redis
	// Cluster's failure detection runs on timers and gossip that a loaded machine delays.
	LoadBefore string        `json:"load_average_before"`
	LoadAfter  string        `json:"load_average_after"`
	Cases      []clusterCase `json:"cases"`
}

// firstOKAfterOf is the end of the first successful bump of one of ids that started at or
// after t.
func (l *ledger) firstOKAfterOf(t time.Time, ids map[string]bool) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best time.Time
	for _, e := range l.events {
		if e.Op == "bump" && e.OK && ids[e.ID] && !e.Start.Before(t) && (best.IsZero() || e.End.Before(best)) {
			best = e.End
		}
	}
	return best, !best.IsZero()
}

// slowestOK is the longest successful bump that started in [from, to).
func (l *ledger) slowestOK(from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := 0.0
	for _, e := range l.events {
		if e.Op == "bump" && e.OK && !e.Start.Before(from) && e.Start.Before(to) {
			worst = max(worst, e.End.Sub(e.Start).Seconds())
		}
	}
	return worst
}

func (l *ledger) failedSamples(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Op == "bump" && !e.OK && len(out) < n {
			out = append(out, fmt.Sprintf("%s %d %s", e.Start.Format("15:04:05.000"), e.Status, e.Err))
		}
	}
	return out
}

func durationEnv(t *testing.T, key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration", key, v)
	}
	return d
}

// TestClusterDataPath runs the sharded store's cases on one cluster, one after another.
func TestClusterDataPath(t *testing.T) {
	preflight(t)
	started := time.Now()
	// 2 s rather than 3 s: the kill case's bound is the timeout + 3 s, while Redis Cluster
	// takes up to 1.5 timeouts plus a second or more of its own (test/datapath/README.md),
	// so a longer timeout leaves the bound less room, not more.
	nodeTimeout := durationEnv(t, "DATAPATH_CLUSTER_NODE_TIMEOUT", 2*time.Second)
	res := &clusterResults{Started: started.UTC(), RedisVersion: redisVersion(), ClusterNodeTimeoutSeconds: nodeTimeout.Seconds(),
		PerShard: shardedPerShard, AppInstances: 2, WriterClients: shardedWriters, LoadBefore: loadAverage()}
	defer func() { writeClusterResults(t, res, started) }()

	s := newShardedStore(t, nodeTimeout)
	for range 3 * shardedPerShard {
		s.addServer()
	}
	spec := rediscluster.Spec{Nodes: s.nodes(3 * shardedPerShard), Shards: 3, PerShard: shardedPerShard}
	t0 := time.Now()
	st, calls := s.reconcile(spec, 200*time.Millisecond, 60*time.Second)
	t.Logf("bootstrap: %d calls, %s, %d shards, %d slots", calls, time.Since(t0).Round(time.Millisecond), len(st.Shards), st.SlotsCovered)
	s.startApps(2, s.nodes(3*shardedPerShard))

	run := func(name string, f func(t *testing.T, l *ledger, c *clusterCase)) {
		c := clusterCase{Name: name, Detail: map[string]any{}}
		ok := t.Run(name, func(t *testing.T) {
			start := time.Now()
			l := newLedger()
			// The figures are taken even when the case stops early.
			defer func() {
				c.AcknowledgedWrites, c.AcknowledgedLost = l.counts()
				c.FailedWrites = l.failedBetween(start, time.Now().Add(time.Hour))
				c.Seconds = time.Since(start).Seconds()
				if c.FailedWrites > 0 {
					c.Detail["failed_samples"] = l.failedSamples(5)
				}
				if err := l.writeEvents(filepath.Join(resultsDir(t), "datapath-cluster-"+name+".jsonl")); err != nil {
					t.Error(err)
				}
			}()
			must(t, createSessions(context.Background(), l, s.appURLs(), shardedSessions, shardedWriters))
			f(t, l, &c)
			unread, err := readBack(context.Background(), l, l.ids(), s.appURLs(), shardedWriters)
			c.SessionsUnreadable = unread
			if err != nil {
				t.Errorf("%d sessions could not be read back: %v", unread, err)
			}
			if _, lost := l.counts(); lost > 0 {
				t.Errorf("%d acknowledged writes lost", lost)
			}
		})
		res.Cases = append(res.Cases, c)
		if !ok {
			t.Logf("case %s failed: %+v", name, c)
		}
	}

	run("shard-primary-killed", func(t *testing.T, l *ledger, c *clusterCase) {
		ids := l.ids()
		owner := s.primaryOf(ids)
		victim := s.serverAt(owner[ids[0]])
		victimID := s.myID(victim)
		onVictim := map[string]bool{}
		for id, a := range owner {
			if a == victim.addr() {
				onVictim[id] = true
			}
		}
		w := startWriters(l, ids, s.appURLs(), shardedWriters, shardedPause)
		time.Sleep(2 * time.Second)
		killed := time.Now()
		victim.proc.kill(syscall.SIGKILL)
		limit := nodeTimeout + 3*time.Second
		c.WriteGapLimitSeconds = limit.Seconds()
		// Once a replica is promoted, the old primary comes back (same port, same
		// nodes.conf, no data) and must rejoin as a replica of it under the same node ID;
		// until then its shard has no replica to acknowledge WAIT 1.
		survivor := s.servers[(victim.ordinal+shardedPerShard)%len(s.servers)]
		if err := waitFor(limit+20*time.Second, func() bool {
			c := s.client(survivor)
			defer c.Close()
			slots, err := c.ClusterSlots(context.Background()).Result()
			if err != nil {
				return false
			}
			k, err := c.ClusterKeySlot(context.Background(), "session:"+ids[0]).Result()
			if err != nil {
				return false
			}
			for _, r := range slots {
				if int64(r.Start) <= k && k <= int64(r.End) {
					return r.Nodes[0].Addr != victim.addr()
				}
			}
			return false
		}); err != nil {
			w.halt()
			t.Fatalf("no replica was promoted: %v", err)
		}
		c.Detail["promoted_after_seconds"] = time.Since(killed).Seconds()
		s.startServer(victim, victim.port)
		c.Detail["restarted_after_seconds"] = time.Since(killed).Seconds()
		var back time.Time
		if err := waitFor(limit+20*time.Second, func() bool {
			var ok bool
			back, ok = l.firstOKAfterOf(killed, onVictim)
			return ok
		}); err != nil {
			w.halt()
			t.Fatalf("no write to the killed primary's shard succeeded: %v", err)
		}
		c.WriteGapSeconds = back.Sub(killed).Seconds()
		st, calls := s.reconcile(spec, shardedInterval, 60*time.Second)
		time.Sleep(2 * time.Second)
		w.halt()
		info, err := s.role(victim)
		must(t, err)
		other := 0
		l.mu.Lock()
		for _, e := range l.events {
			if e.Op == "bump" && !e.OK && !onVictim[e.ID] {
				other++
			}
		}
		l.mu.Unlock()
		c.Detail["failed_writes_other_shards"] = other
		if other > 0 {
			t.Errorf("%d writes to the other shards failed while one shard failed over", other)
		}
		c.Detail["killed"] = victim.addr()
		c.Detail["sessions_on_killed_shard"] = len(onVictim)
		c.Detail["rejoined_role"] = info["role"]
		c.Detail["rejoined_master"] = info["master_host"] + ":" + info["master_port"]
		c.Detail["same_node_id"] = s.myID(victim) == victimID
		c.Detail["reconcile_calls_after_restart"] = calls
		c.Detail["shards"] = st.Shards
		if info["role"] != "slave" || info["master_link_status"] != "up" {
			t.Errorf("the old primary came back as %s (link %s), want a replica", info["role"], info["master_link_status"])
		}
		if c.WriteGapSeconds > limit.Seconds() {
			t.Errorf("write gap %.2fs, limit %s", c.WriteGapSeconds, limit)
		}
	})

	run("restart-new-address", func(t *testing.T, l *ledger, c *clusterCase) {
		ids := l.ids()
		var victim *shardedServer
		for _, srv := range s.servers {
			if info, err := s.role(srv); err == nil && info["role"] == "slave" {
				victim = srv
				break
			}
		}
		if victim == nil {
			t.Fatal("no replica to restart")
		}
		info, err := s.role(victim)
		must(t, err)
		primary := info["master_host"] + ":" + info["master_port"]
		owner := s.primaryOf(ids)
		onShard := map[string]bool{}
		for id, a := range owner {
			if a == primary {
				onShard[id] = true
			}
		}
		id := s.myID(victim)
		oldAddr := victim.addr()
		w := startWriters(l, ids, s.appURLs(), shardedWriters, shardedPause)
		time.Sleep(2 * time.Second)
		killed := time.Now()
		victim.proc.kill(syscall.SIGKILL)
		s.startServer(victim, clusterPort(t)) // a new pod: a new address, the same volume
		st, calls := s.reconcile(rediscluster.Spec{Nodes: s.nodes(3 * shardedPerShard), Shards: 3, PerShard: shardedPerShard}, shardedInterval, 60*time.Second)
		limit := nodeTimeout + 3*time.Second
		c.WriteGapLimitSeconds = limit.Seconds()
		var back time.Time
		if err := waitFor(limit+20*time.Second, func() bool {
			var ok bool
			back, ok = l.firstOKAfterOf(killed, onShard)
			return ok
		}); err != nil {
			w.halt()
			t.Fatalf("no write to the restarted replica's shard succeeded: %v", err)
		}
		c.WriteGapSeconds = back.Sub(killed).Seconds()
		time.Sleep(2 * time.Second)
		w.halt()
		after, err := s.role(victim)
		must(t, err)
		c.Detail["old_address"], c.Detail["new_address"] = oldAddr, victim.addr()
		c.Detail["same_node_id"] = s.myID(victim) == id
		c.Detail["role"] = after["role"]
		c.Detail["reconcile_calls"] = calls
		c.Detail["shards"] = st.Shards
		if s.myID(victim) != id {
			t.Errorf("the server came back as a new node (%s, was %s)", s.myID(victim), id)
		}
		if after["role"] != "slave" || after["master_link_status"] != "up" || after["master_host"]+":"+after["master_port"] != primary {
			t.Errorf("after the restart: role %s of %s:%s link %s, want a replica of %s", after["role"], after["master_host"], after["master_port"], after["master_link_status"], primary)
		}
		if c.WriteGapSeconds > limit.Seconds() {
			t.Errorf("write gap %.2fs, limit %s", c.WriteGapSeconds, limit)
		}
	})

	run("reshard-3-4-3", func(t *testing.T, l *ledger, c *clusterCase) {
		ids := l.ids()
		w := startWriters(l, ids, s.appURLs(), shardedWriters, shardedPause)
		time.Sleep(time.Second)
		from := time.Now()
		for range shardedPerShard { // the StatefulSet grows first
			s.addServer()
		}
		grow := time.Now()
		st, calls := s.reconcile(rediscluster.Spec{Nodes: s.nodes(4 * shardedPerShard), Shards: 4, PerShard: shardedPerShard}, shardedInterval, 120*time.Second)
		c.Detail["grow_seconds"], c.Detail["grow_calls"] = time.Since(grow).Seconds(), calls
		c.Detail["shards_after_grow"] = st.Shards
		if len(st.Shards) != 4 || st.SlotsCovered != rediscluster.Slots {
			t.Errorf("after growing: %+v", st)
		}
		time.Sleep(time.Second)
		shrink := time.Now()
		st, calls = s.reconcile(rediscluster.Spec{Nodes: s.nodes(4 * shardedPerShard), Shards: 3, PerShard: shardedPerShard}, shardedInterval, 120*time.Second)
		c.Detail["shrink_seconds"], c.Detail["shrink_calls"] = time.Since(shrink).Seconds(), calls
		c.Detail["nodes_needed_after_shrink"] = st.NodesNeeded
		c.Detail["servers_before_shrink"] = len(s.servers)
		if st.NodesNeeded != 3*shardedPerShard {
			t.Errorf("nodesNeeded %d after draining, want %d", st.NodesNeeded, 3*shardedPerShard)
		}
		// The StatefulSet shrinks; the cluster must not miss the two servers.
		for _, srv := range s.servers[3*shardedPerShard:] {
			srv.proc.kill(syscall.SIGKILL)
		}
		s.servers = s.servers[:3*shardedPerShard]
		st, _ = s.reconcile(rediscluster.Spec{Nodes: s.nodes(3 * shardedPerShard), Shards: 3, PerShard: shardedPerShard}, shardedInterval, 60*time.Second)
		time.Sleep(time.Second)
		to := time.Now()
		w.halt()
		c.Detail["shards"] = st.Shards
		c.Detail["slots_covered"] = st.SlotsCovered
		c.Detail["slowest_write_seconds"] = l.slowestOK(from, to)
		c.WriteGapSeconds = l.longestStall(from, to)
		if len(st.Shards) != 3 || st.SlotsCovered != rediscluster.Slots || !st.OK {
			t.Errorf("at the end: %+v", st)
		}
		if f := l.failedBetween(from, to); f > 0 {
			t.Errorf("%d writes failed while slots moved: %v", f, l.failedSamples(5))
		}
	})
}

func writeClusterResults(t *testing.T, res *clusterResults, started time.Time) {
	res.Seconds = time.Since(started).Seconds()
	res.LoadAfter = loadAverage()
	dir := resultsDir(t)
	raw, err := json.MarshalIndent(res, "", "  ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "datapath-cluster.json"), append(raw, '\n'), 0o644))
	var b strings.Builder
	fmt.Fprintf(&b, "datapath-cluster (%.0fs, cluster-node-timeout %.0fs, load %s):", res.Seconds, res.ClusterNodeTimeoutSeconds, res.LoadBefore)
	for _, c := range res.Cases {
		fmt.Fprintf(&b, " | %s: acked %d lost %d failed %d gap %.2fs", c.Name, c.AcknowledgedWrites, c.AcknowledgedLost, c.FailedWrites, c.WriteGapSeconds)
	}
	b.WriteString("\n")
	fmt.Print(b.String())
	must(t, os.WriteFile(filepath.Join(dir, "datapath-cluster.summary"), []byte(b.String()), 0o644))
}
