package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster mode (SESSION_REDIS_MODE=cluster) against a real Redis Cluster: three shards
// of a primary and a replica, made by redis-cli --cluster create.

const testClusterUser, testClusterPassword = "app-web", "cluster-app-pw"

// startRedisCluster runs 6 redis-server processes with cluster-enabled, the default user
// off, an operator-like admin user and an app user with the rights the sharded store
// gives apps, and joins them into 3 shards with one replica each.
func startRedisCluster(t *testing.T) []*redisProc {
	t.Helper()
	bin := requireBinary(t, "redis-server")
	cli := requireBinary(t, "redis-cli")
	var procs []*redisProc
	var addrs []string
	for range 6 {
		dir := t.TempDir()
		port := freeClusterPort(t)
		conf := []string{
			"bind 127.0.0.1",
			fmt.Sprintf("port %d", port),
			"daemonize no",
			`save ""`,
			"appendonly no",
			"dir " + dir,
			"logfile " + dir + "/redis.log",
			"cluster-enabled yes",
			"cluster-config-file nodes.conf",
			"cluster-node-timeout 2000",
			"user default off",
			"user admin on >" + testRedisPassword + " ~* &* +@all",
			"user " + testClusterUser + " on >" + testClusterPassword + " ~session:* -@all +@read +@write +@keyspace +@hash +@scripting +@connection -@admin -@dangerous +info +role +asking +readonly +readwrite +cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid",
			"masteruser admin",
			"masterauth " + testRedisPassword,
		}
		p := startProc(t, bin, dir, "redis.conf", conf, port)
		waitFor(t, 10*time.Second, "redis-server "+p.Addr, func() error { return pingAdmin(p.Addr) })
		procs = append(procs, p)
		addrs = append(addrs, p.Addr)
	}
	args := append([]string{"--user", "admin", "--pass", testRedisPassword, "--no-auth-warning",
		"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "cluster_state:ok everywhere", func() error {
		for _, a := range addrs {
			c := adminClient(a)
			info, err := c.ClusterInfo(context.Background()).Result()
			c.Close()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: not ok", a)
			}
			repl, err := redisInfoAs(a, "replication")
			if err != nil {
				return err
			}
			if repl["role"] == "slave" && repl["master_link_status"] != "up" {
				return fmt.Errorf("%s: replica link %s", a, repl["master_link_status"])
			}
		}
		return nil
	})
	return procs
}

// freeClusterPort: the cluster bus listens on port+10000, which must be free too.
func freeClusterPort(t *testing.T) int {
	for range 50 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func adminClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Username: "admin", Password: testRedisPassword,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

func redisInfoAs(addr, section string) (map[string]string, error) {
	c := adminClient(addr)
	defer c.Close()
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func pingAdmin(addr string) error {
	c := adminClient(addr)
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

func clusterEnv(procs []*redisProc) map[string]string {
	var nodes []string
	for _, p := range procs {
		nodes = append(nodes, p.Addr)
	}
	return map[string]string{
		"SESSION_MODE":                "Store",
		"SESSION_REDIS_MODE":          "cluster",
		"SESSION_REDIS_CLUSTER_NODES": strings.Join(nodes, ","),
		"SESSION_REDIS_USERNAME":      testClusterUser,
		"SESSION_REDIS_PASSWORD":      testClusterPassword,
		"SESSION_REDIS_WAIT_REPLICAS": "1",
	}
}

// slotOwner is the primary (of procs) that holds slot, by CLUSTER NODES.
func slotOwner(t *testing.T, procs []*redisProc, slot int64) (addr, id string) {
	c := adminClient(procs[0].Addr)
	defer c.Close()
	shards, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			return s.Nodes[0].Addr, s.Nodes[0].ID
		}
	}
	t.Fatalf("slot %d has no owner", slot)
	return "", ""
}

func TestRedisClusterStore(t *testing.T) {
	procs := startRedisCluster(t)
	cfg := mustConfig(t, clusterEnv(procs))
	if cfg.Backend != BackendRedis || cfg.RedisMode != "cluster" || len(cfg.ClusterNodes) != 6 {
		t.Fatalf("config %+v", cfg)
	}
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)
	if code, _ := ta.call(t, http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz: %d", code)
	}

	// Sessions land on every shard; each acknowledged write is on a replica (WAIT 1).
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		s := ta.login(t)
		ta.bump(t, s.ID, 1)
		ids[i] = s.ID
	}
	ctx := context.Background()
	var onReplicas, onPrimaries int64
	for _, p := range procs {
		c := adminClient(p.Addr)
		role, _ := c.Do(ctx, "role").Slice()
		size, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if role[0] == "master" {
			if size == 0 {
				t.Errorf("primary %s holds no session: the store does not shard", p.Addr)
			}
			onPrimaries += size
		} else {
			onReplicas += size
		}
	}
	if onPrimaries != n || onReplicas != n {
		t.Fatalf("%d sessions on the primaries and %d on the replicas, want %d and %d", onPrimaries, onReplicas, n, n)
	}

	// A slot moves while the app writes: before its key moves the source serves it, after
	// it the source answers ASK (the write goes to the importing server with ASKING), and
	// once the slot is handed over every server answers MOVED.
	id := ids[0]
	key := "session:" + id
	admin := adminClient(procs[0].Addr)
	defer admin.Close()
	slot, err := admin.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	srcAddr, srcID := slotOwner(t, procs, slot)
	var dstAddr, dstID string
	for _, p := range procs {
		c := adminClient(p.Addr)
		role, _ := c.Do(ctx, "role").Slice()
		myid, _ := c.Do(ctx, "cluster", "myid").Text()
		c.Close()
		if role[0] == "master" && p.Addr != srcAddr {
			dstAddr, dstID = p.Addr, myid
			break
		}
	}
	src, dst := adminClient(srcAddr), adminClient(dstAddr)
	defer src.Close()
	defer dst.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dst.Do(ctx, "cluster", "setslot", slot, "importing", srcID).Err())
	must(src.Do(ctx, "cluster", "setslot", slot, "migrating", dstID).Err())
	ta.bump(t, id, 2) // still on the source
	host, port, _ := net.SplitHostPort(dstAddr)
	must(src.Do(ctx, "migrate", host, port, "", 0, 5000, "auth2", "admin", testRedisPassword, "keys", key).Err())
	ta.bump(t, id, 3) // ASK
	pipe := dst.Pipeline()
	pipe.Do(ctx, "asking")
	got := pipe.HGet(ctx, key, "counter")
	_, _ = pipe.Exec(ctx)
	if v, err := got.Result(); err != nil || v != "3" {
		t.Fatalf("after ASK the importing server holds %q, %v; want 3", v, err)
	}
	for _, c := range []*redis.Client{dst, src} {
		must(c.Do(ctx, "cluster", "setslot", slot, "node", dstID).Err())
	}
	for _, p := range procs {
		c := adminClient(p.Addr)
		_ = c.Do(ctx, "cluster", "setslot", slot, "node", dstID).Err() // replicas refuse; fine
		c.Close()
	}
	ta.bump(t, id, 4) // MOVED
	if code, v := ta.peek(t, id); code != http.StatusOK || v != 4 {
		t.Fatalf("peek after the move: %d %d, want 200 4", code, v)
	}
	for _, other := range ids[1:] {
		if code, v := ta.peek(t, other); code != http.StatusOK || v != 1 {
			t.Fatalf("session %s: %d %d, want 200 1", other, code, v)
		}
	}

	// One shard's primary dies: the app stays ready (the other shards serve).
	for _, p := range procs {
		if p.Addr == dstAddr {
			p.kill()
		}
	}
	if code, _ := ta.call(t, http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz with one primary down: %d, want 200", code)
	}
}
