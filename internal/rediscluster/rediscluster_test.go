package rediscluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func myID(t *testing.T, s *server) string {
	c := newClient(s.addr(), testAuth)
	defer c.Close()
	id, err := c.Do(context.Background(), "cluster", "myid").Text()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func checkShards(t *testing.T, st State, shards, perShard int) {
	t.Helper()
	if len(st.Shards) != shards || st.SlotsCovered != Slots || !st.OK {
		t.Fatalf("state %+v: want %d shards, all slots, ok", st, shards)
	}
	for _, sh := range st.Shards {
		if sh.Primary == "" || len(sh.Replicas) != perShard-1 {
			t.Fatalf("shard %+v: want a primary and %d replicas", sh, perShard-1)
		}
		if want := Slots / shards; sh.Slots < want || sh.Slots > want+1 {
			t.Fatalf("shard %+v: %d slots, want %d or %d", sh, sh.Slots, want, want+1)
		}
	}
}

// commandCalls sums INFO commandstats calls of the commands that change a cluster.
func commandCalls(t *testing.T, ss []*server) int64 {
	var n int64
	for _, s := range ss {
		c := newClient(s.addr(), testAuth)
		info, err := c.Info(context.Background(), "commandstats").Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			for _, cmd := range []string{"cluster|meet", "cluster|addslotsrange", "cluster|replicate", "cluster|setslot", "cluster|forget", "cluster|reset", "migrate"} {
				if strings.HasPrefix(line, "cmdstat_"+cmd+":calls=") {
					var calls int64
					fmt.Sscanf(strings.TrimPrefix(line, "cmdstat_"+cmd+":"), "calls=%d", &calls)
					n += calls
				}
			}
		}
	}
	return n
}

func writeKeys(t *testing.T, c *redis.ClusterClient, n int) {
	ctx := context.Background()
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("session:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func checkKeys(t *testing.T, c *redis.ClusterClient, n int) {
	t.Helper()
	ctx := context.Background()
	c.ReloadState(ctx)
	for i := range n {
		v, err := c.Get(ctx, fmt.Sprintf("session:%d", i)).Int()
		if err != nil || v != i {
			t.Fatalf("session:%d = %d, %v", i, v, err)
		}
	}
}

// The whole life of a sharded store: bootstrap, a no-op call, a shard added and removed
// with keys in it (none lost), a server back on a new port (same node ID), and a server
// replaced by an empty one (its old ID forgotten).
func TestLifecycle(t *testing.T) {
	top := t
	ss := startServers(t, 8)
	spec := Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}

	// Fewer servers than the shards need (the StatefulSet still growing): wait, touch nothing.
	if st, err := Reconcile(context.Background(), Spec{Nodes: addrs(ss[:4]), Shards: 3, PerShard: 2}, testAuth); err != nil || !st.Busy || !strings.HasPrefix(st.Step, "wait for 6 servers") {
		t.Fatalf("with 4 of 6 servers: %+v %v", st, err)
	}
	if n := commandCalls(t, ss[:4]); n != 0 {
		t.Fatalf("with 4 of 6 servers: %d cluster commands sent", n)
	}
	if _, err := Reconcile(context.Background(), Spec{Nodes: []string{ss[0].addr(), ss[0].addr()}, Shards: 3, PerShard: 1}, testAuth); err == nil {
		t.Fatal("a node listed twice was accepted")
	}

	start := time.Now()
	st, calls := converge(t, spec, 60*time.Second)
	checkShards(t, st, 3, 2)
	if st.NodesNeeded != 6 {
		t.Fatalf("nodesNeeded %d, want 6", st.NodesNeeded)
	}
	for i, sh := range st.Shards {
		if sh.Primary != ss[2*i].addr() || sh.Replicas[0] != ss[2*i+1].addr() {
			t.Fatalf("shard %d: %+v, want primary ordinal %d and replica %d", i, sh, 2*i, 2*i+1)
		}
	}
	t.Logf("bootstrap: %d calls, %s", calls, time.Since(start).Round(time.Millisecond))

	// A healthy cluster: no change at all.
	before := commandCalls(t, ss[:6])
	st, err := Reconcile(context.Background(), spec, testAuth)
	if err != nil || st.Busy || st.Step != "" {
		t.Fatalf("no-op call: %+v %v", st, err)
	}
	if after := commandCalls(t, ss[:6]); after != before {
		t.Fatalf("a call on a healthy cluster changed it: %d cluster commands, was %d", after, before)
	}
	obs, err := Observe(context.Background(), spec.Nodes, testAuth)
	if err != nil || obs.Busy || len(obs.Shards) != 3 || obs.NodesNeeded != 6 {
		t.Fatalf("observe: %+v %v", obs, err)
	}

	cc := clusterClient(ss[:6])
	defer func() { cc.Close() }()
	const keys = 3000
	writeKeys(t, cc, keys)

	t.Run("finish a migration left open", func(t *testing.T) {
		// A call that stopped mid-slot (the operator restarted): the slot is IMPORTING on
		// one primary and MIGRATING on the other, one of its keys already moved.
		ctx := context.Background()
		extra := []string{"{session:1}a", "{session:1}b"}
		for _, k := range extra {
			if err := cc.Set(ctx, k, k, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		slot, err := cc.ClusterKeySlot(ctx, "session:1").Result()
		if err != nil {
			t.Fatal(err)
		}
		owner, err := cc.MasterForKey(ctx, "session:1")
		if err != nil {
			t.Fatal(err)
		}
		var src, dst *server
		for _, s := range ss[:6] {
			if s.addr() == owner.Options().Addr {
				src = s
			}
		}
		for _, s := range []*server{ss[0], ss[2], ss[4]} {
			if s != src && dst == nil {
				dst = s
			}
		}
		if src == nil || dst == nil || src == dst {
			t.Fatalf("owner %s: no source/destination pair", owner.Options().Addr)
		}
		sc, dc := newClient(src.addr(), testAuth), newClient(dst.addr(), testAuth)
		defer sc.Close()
		defer dc.Close()
		if err := dc.Do(ctx, "cluster", "setslot", slot, "importing", myID(t, src)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := sc.Do(ctx, "cluster", "setslot", slot, "migrating", myID(t, dst)).Err(); err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(dst.addr())
		if err := sc.Do(ctx, "migrate", host, port, "", 0, 5000, "auth2", testAuth.Username, testAuth.Password, "keys", extra[0]).Err(); err != nil {
			t.Fatal(err)
		}
		st, _ := converge(t, spec, 60*time.Second)
		checkShards(t, st, 3, 2)
		obs, err := Observe(ctx, spec.Nodes, testAuth)
		if err != nil || obs.Busy {
			t.Fatalf("after finishing: %+v %v", obs, err)
		}
		checkKeys(t, cc, keys)
		for _, k := range extra {
			if v, err := cc.Get(ctx, k).Result(); err != nil || v != k {
				t.Fatalf("%s = %q, %v", k, v, err)
			}
		}
	})

	t.Run("grow to 4 shards", func(t *testing.T) {
		spec := Spec{Nodes: addrs(ss), Shards: 4, PerShard: 2}
		start := time.Now()
		st, calls := converge(t, spec, 90*time.Second)
		checkShards(t, st, 4, 2)
		checkKeys(t, cc, keys)
		t.Logf("3 -> 4 shards: %d calls, %s", calls, time.Since(start).Round(time.Millisecond))
	})

	t.Run("shrink to 3 shards", func(t *testing.T) {
		spec := Spec{Nodes: addrs(ss), Shards: 3, PerShard: 2}
		start := time.Now()
		st, calls := converge(t, spec, 90*time.Second)
		checkShards(t, st, 3, 2)
		if st.NodesNeeded != 6 {
			t.Fatalf("nodesNeeded %d, want 6", st.NodesNeeded)
		}
		checkKeys(t, cc, keys)
		t.Logf("4 -> 3 shards: %d calls, %s", calls, time.Since(start).Round(time.Millisecond))
		// The drained servers left: they know only themselves, and nobody knows them.
		for _, s := range ss[6:] {
			c := newClient(s.addr(), testAuth)
			nodes, _ := c.ClusterNodes(context.Background()).Result()
			c.Close()
			if n := strings.Count(strings.TrimSpace(nodes), "\n") + 1; n != 1 {
				t.Fatalf("%s still knows %d nodes", s.addr(), n)
			}
		}
		// Once the StatefulSet shrinks, the spec lists 6 nodes and nothing more happens.
		ss[6].kill()
		ss[7].kill()
		converge(t, Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}, 30*time.Second)
		for _, s := range ss[:6] {
			c := newClient(s.addr(), testAuth)
			nodes, _ := c.ClusterNodes(context.Background()).Result()
			c.Close()
			if n := strings.Count(strings.TrimSpace(nodes), "\n") + 1; n != 6 {
				t.Fatalf("%s knows %d nodes, want 6:\n%s", s.addr(), n, nodes)
			}
		}
	})

	t.Run("back on a new port as itself", func(t *testing.T) {
		old := ss[3]
		id := myID(t, old)
		old.kill()
		ss[3] = startServer(top, old.dir, freePort(t))
		spec := Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}
		st, _ := converge(t, spec, 30*time.Second)
		checkShards(t, st, 3, 2)
		if got := myID(t, ss[3]); got != id {
			t.Fatalf("node ID %s after the restart, was %s", got, id)
		}
		if st.Shards[1].Replicas[0] != ss[3].addr() && st.Shards[1].Primary != ss[3].addr() {
			t.Fatalf("shard 1 %+v does not have %s", st.Shards[1], ss[3].addr())
		}
		checkKeys(t, cc, keys)
	})

	t.Run("every server back on a new port", func(t *testing.T) {
		ids := map[int]string{}
		for i, s := range ss[:6] {
			ids[i] = myID(t, s)
			s.kill()
		}
		for i, s := range ss[:6] {
			ss[i] = startServer(top, s.dir, freePort(t))
		}
		spec := Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}
		st, calls := converge(t, spec, 60*time.Second)
		checkShards(t, st, 3, 2)
		for i, s := range ss[:6] {
			if got := myID(t, s); got != ids[i] {
				t.Fatalf("ordinal %d: node ID %s, was %s", i, got, ids[i])
			}
		}
		t.Logf("all back on new ports: %d calls", calls)
		// Every replica streams from its primary again (its link follows the new address).
		deadline := time.Now().Add(30 * time.Second)
		for _, s := range []*server{ss[1], ss[3], ss[5]} {
			for {
				c := newClient(s.addr(), testAuth)
				info, _ := c.Info(context.Background(), "replication").Result()
				c.Close()
				if strings.Contains(info, "master_link_status:up") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: replication link not up:\n%s", s.addr(), info)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		cc.Close()
		cc = clusterClient(ss[:6])
		writeKeys(t, cc, keys) // memory-only servers: the data went with them
	})

	t.Run("after a failover", func(t *testing.T) {
		// Shard 0's primary dies; Redis Cluster promotes its replica; it comes back as a
		// replica. Reconcile leaves that as it is (any member may lead its shard) and a
		// further call on the healthy cluster changes nothing.
		old := ss[0]
		old.kill()
		deadline := time.Now().Add(30 * time.Second)
		for {
			obs, _ := Observe(context.Background(), addrs(ss[1:6]), testAuth)
			if len(obs.Shards) > 0 && obs.Shards[0].Primary == ss[1].addr() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failover: %+v", obs)
			}
			time.Sleep(200 * time.Millisecond)
		}
		ss[0] = startServer(top, old.dir, old.port)
		spec := Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}
		st, _ := converge(t, spec, 60*time.Second)
		checkShards(t, st, 3, 2)
		if st.Shards[0].Primary != ss[1].addr() || st.Shards[0].Replicas[0] != ss[0].addr() {
			t.Fatalf("shard 0 after the failover: %+v", st.Shards[0])
		}
		before := commandCalls(t, ss[:6])
		if st, err := Reconcile(context.Background(), spec, testAuth); err != nil || st.Busy {
			t.Fatalf("no-op call after the failover: %+v %v", st, err)
		}
		if after := commandCalls(t, ss[:6]); after != before {
			t.Fatalf("a call on a healthy cluster after a failover changed it: %d cluster commands, was %d", after, before)
		}
	})

	t.Run("replaced by an empty server", func(t *testing.T) {
		old := ss[5]
		id := myID(t, old)
		old.kill()
		_ = removeAll(old.dir)
		ss[5] = startServer(top, old.dir+"-new", old.port)
		spec := Spec{Nodes: addrs(ss[:6]), Shards: 3, PerShard: 2}
		st, _ := converge(t, spec, 60*time.Second)
		checkShards(t, st, 3, 2)
		if myID(t, ss[5]) == id {
			t.Fatal("an empty server kept the old ID")
		}
		for _, s := range ss[:6] {
			c := newClient(s.addr(), testAuth)
			nodes, _ := c.ClusterNodes(context.Background()).Result()
			c.Close()
			if strings.Contains(nodes, id) {
				t.Fatalf("%s still knows the old ID %s", s.addr(), id)
			}
		}
		checkKeys(t, cc, keys)
	})
}
