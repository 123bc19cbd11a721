package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store mode against real redis-server processes: a primary and one replica,
// so that WAIT 1 is really satisfied by a replica.
func TestRedisStoreWaitOneReplica(t *testing.T) {
	primary := startRedisServer(t, "")
	replica := startRedisServer(t, primary.Addr)

	cfg := mustConfig(t, map[string]string{
		"SESSION_MODE":                "Store",
		"SESSION_TTL":                 "10m0s",
		"SESSION_REDIS_ADDR":          primary.Addr,
		"SESSION_REDIS_PASSWORD":      testRedisPassword,
		"SESSION_REDIS_WAIT_REPLICAS": "1",
		"SESSION_PAD_BYTES":           "1024",
	})
	if cfg.Backend != BackendRedis {
		t.Fatalf("backend %q, want redis", cfg.Backend)
	}
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)

	if code, _ := ta.call(t, http.MethodGet, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz: %d", code)
	}
	s := ta.login(t)
	ta.bump(t, s.ID, 1)
	ta.bump(t, s.ID, 2)
	if code, n := ta.peek(t, s.ID); code != http.StatusOK || n != 2 {
		t.Fatalf("peek: %d counter %d, want 200 and 2", code, n)
	}
	if code, _ := ta.call(t, http.MethodGet, "/session/peek", s.ID); code != http.StatusOK {
		t.Fatalf("/session/peek: %d", code)
	}

	// The acknowledged write is on the replica too, with the TTL and the padding.
	rc := directClient(replica.Addr, testRedisPassword)
	defer rc.Close()
	ctx := context.Background()
	if v, err := rc.HGet(ctx, "session:"+s.ID, "counter").Result(); err != nil || v != "2" {
		t.Fatalf("replica HGET counter = %q, %v; want 2", v, err)
	}
	if n, err := rc.HStrLen(ctx, "session:"+s.ID, "pad").Result(); err != nil || n != 1024 {
		t.Fatalf("replica pad length = %d, %v; want 1024", n, err)
	}
	pc := directClient(primary.Addr, testRedisPassword)
	defer pc.Close()
	if ttl, err := pc.PTTL(ctx, "session:"+s.ID).Result(); err != nil || ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("PTTL = %s, %v; want about 10m", ttl, err)
	}

	// Unknown, malformed and missing sessions are 401 and create no key.
	unknown := newSessionID()
	for _, sid := range []string{unknown, "not-a-session-id", ""} {
		if code, _ := ta.call(t, http.MethodGet, "/session", sid); code != http.StatusUnauthorized {
			t.Fatalf("GET /session with %q: %d, want 401", sid, code)
		}
	}
	if n, _ := pc.Exists(ctx, "session:"+unknown).Result(); n != 0 {
		t.Fatalf("an unknown session id created a key")
	}
	m := ta.metricsText(t)
	for _, want := range []string{
		"session_app_sessions_created_total 1",
		`session_app_http_request_duration_seconds_count{code="200",route="/session"} 3`,
		`session_app_http_request_duration_seconds_count{code="401",route="/session"} 3`,
		`session_app_store_errors_total{operation="wait"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// With no replica attached, WAIT 1 cannot be satisfied: every write must be
// reported as failed (503), never as acknowledged.
func TestRedisStoreWaitFailsWithoutReplica(t *testing.T) {
	primary := startRedisServer(t, "")
	cfg := mustConfig(t, map[string]string{
		"SESSION_MODE":                "Store",
		"SESSION_REDIS_ADDR":          primary.Addr,
		"SESSION_REDIS_PASSWORD":      testRedisPassword,
		"SESSION_REDIS_WAIT_REPLICAS": "1",
		"SESSION_REDIS_WAIT_TIMEOUT":  "200ms",
	})
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)

	start := time.Now()
	if code, _ := ta.call(t, http.MethodPost, "/login", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /login without a replica: %d, want 503", code)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("the failed write took %s; want about the WAIT timeout (200ms)", d)
	}
	// A session written without WAIT (as if created before the replica left) can't be bumped either.
	id := newSessionID()
	if _, err := newRedisStore(Config{TTL: time.Minute}, store.rdb).Create(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if code, _ := ta.call(t, http.MethodGet, "/session", id); code != http.StatusServiceUnavailable {
		t.Fatalf("GET /session without a replica: %d, want 503", code)
	}
	// Reads need no replica. The failed bump did reach the primary (it is only
	// not acknowledged), so the counter may read 1: never lower than acknowledged.
	if code, n := ta.peek(t, id); code != http.StatusOK || n != 1 {
		t.Fatalf("peek: %d %d", code, n)
	}
	m := ta.metricsText(t)
	if !strings.Contains(m, `session_app_store_errors_total{operation="wait"} 2`) {
		t.Errorf("/metrics should count 2 wait failures:\n%s", grepLines(m, "session_app_store_errors_total"))
	}
	if !strings.Contains(m, "session_app_sessions_created_total 0") {
		t.Errorf("a failed login was counted as created")
	}
}

// WAIT_REPLICAS=0 means no WAIT at all: a lone primary is enough.
func TestRedisStoreNoWait(t *testing.T) {
	primary := startRedisServer(t, "")
	cfg := mustConfig(t, map[string]string{
		"SESSION_MODE":           "Sticky", // Sticky with a store (hybrid) uses Redis too
		"SESSION_REDIS_ADDR":     primary.Addr,
		"SESSION_REDIS_PASSWORD": testRedisPassword,
		"SESSION_TTL_SECONDS":    "60",
	})
	if cfg.Backend != BackendRedis || cfg.TTL != time.Minute {
		t.Fatalf("config: %+v", cfg)
	}
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)
	s := ta.login(t)
	ta.bump(t, s.ID, 1)
}

// Through Sentinel: the FailoverClient follows a failover. The primary is
// SIGKILLed while a client keeps bumping one session; writes fail fast for a
// few seconds, then succeed on the promoted replica (WAIT 1 then answered by
// the other replica), and no acknowledged counter is lost.
func TestRedisSentinelFailover(t *testing.T) {
	primary := startRedisServer(t, "")
	r1 := startRedisServer(t, primary.Addr)
	r2 := startRedisServer(t, primary.Addr)
	downAfter := time.Second
	sentinel := startSentinel(t, primary.Addr, 1, downAfter)
	waitFor(t, 10*time.Second, "sentinel to discover both replicas", func() error {
		c := directClient(sentinel.Addr, testRedisPassword)
		defer c.Close()
		reps, err := c.Do(context.Background(), "SENTINEL", "REPLICAS", "mymaster").Slice()
		if err != nil {
			return err
		}
		if len(reps) != 2 {
			return errf("sentinel knows %d replicas", len(reps))
		}
		return nil
	})

	cfg := mustConfig(t, map[string]string{
		"SESSION_MODE":                  "Store",
		"SESSION_REDIS_SENTINEL_ADDRS":  sentinel.Addr,
		"SESSION_REDIS_SENTINEL_MASTER": "mymaster",
		"SESSION_REDIS_ADDR":            primary.Addr, // present too; Sentinel must be preferred
		"SESSION_REDIS_PASSWORD":        testRedisPassword,
		"SESSION_REDIS_WAIT_REPLICAS":   "1",
	})
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)

	s := ta.login(t)
	var acked int64
	for i := int64(1); i <= 5; i++ {
		ta.bump(t, s.ID, i)
		acked = i
	}

	primary.kill()
	killed := time.Now()
	var firstOK time.Duration
	failures := 0
	deadline := killed.Add(30 * time.Second)
	var slowest time.Duration
	for time.Now().Before(deadline) {
		reqStart := time.Now()
		code, got := ta.call(t, http.MethodGet, "/session", s.ID)
		slowest = max(slowest, time.Since(reqStart))
		switch code {
		case http.StatusOK:
			if got.Counter <= acked {
				t.Fatalf("after failover the counter went from %d (acknowledged) to %d", acked, got.Counter)
			}
			acked = got.Counter
			if firstOK == 0 {
				firstOK = time.Since(killed)
			}
		case http.StatusServiceUnavailable:
			failures++
			if firstOK != 0 {
				t.Fatalf("a write failed after writes had resumed")
			}
		default:
			t.Fatalf("GET /session during failover: status %d", code)
		}
		if firstOK != 0 && time.Since(killed) > firstOK+time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if firstOK == 0 {
		t.Fatalf("no write succeeded within 30s of killing the primary (%d failures)", failures)
	}
	newPrimary, err := sentinelMaster(sentinel.Addr)
	if err != nil || (newPrimary != r1.Addr && newPrimary != r2.Addr) {
		t.Fatalf("sentinel names %q (%v) as primary; want one of the replicas", newPrimary, err)
	}
	t.Logf("write gap after SIGKILL of the primary: %s (%d failed writes, slowest request %s, down-after %s); new primary %s",
		firstOK.Round(10*time.Millisecond), failures, slowest.Round(time.Millisecond), downAfter, newPrimary)
	if slowest > 3*time.Second {
		t.Errorf("a request took %s during the failover; it should fail fast", slowest)
	}
	if firstOK > downAfter+10*time.Second {
		t.Errorf("write gap %s is too long", firstOK)
	}
	if code, n := ta.peek(t, s.ID); code != http.StatusOK || n != acked {
		t.Fatalf("after failover: peek %d counter %d, want %d", code, n, acked)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A planned switchover done safely, as the operator must do it during a
// rolling change. A bare SENTINEL FAILOVER with the old primary alive LOSES
// acknowledged writes: until Sentinel reconfigures them, the old primary keeps
// taking writes and the other replica keeps acknowledging them (so WAIT 1
// succeeds), then that replica resyncs from the promoted one and drops them.
// (Observed here: counter acknowledged at 50, read back as 10.) So the switch
// is: CLIENT PAUSE WRITE on the old primary, wait until every replica has its
// offset, SENTINEL FAILOVER, then REPLICAOF the new primary on the old one and
// CLIENT UNPAUSE; writes that were paused then fail with READONLY and are
// retried by the app on the new primary. The app must lose nothing and move
// its writes over within seconds.
func TestRedisSentinelPlannedFailover(t *testing.T) {
	// Two replicas, as in the operator's default store (1 primary + 2): with a
	// single replica, WAIT 1 fails until the old primary is a replica again.
	primary := startRedisServer(t, "")
	r1 := startRedisServer(t, primary.Addr)
	r2 := startRedisServer(t, primary.Addr)
	sentinel := startSentinel(t, primary.Addr, 1, 5*time.Second)
	waitFor(t, 10*time.Second, "sentinel to discover the replicas", func() error {
		c := directClient(sentinel.Addr, testRedisPassword)
		defer c.Close()
		reps, err := c.Do(context.Background(), "SENTINEL", "REPLICAS", "mymaster").Slice()
		if err != nil || len(reps) != 2 {
			return errf("replicas %v %v", reps, err)
		}
		return nil
	})
	cfg := mustConfig(t, map[string]string{
		"SESSION_REDIS_SENTINEL_ADDRS":  sentinel.Addr,
		"SESSION_REDIS_SENTINEL_MASTER": "mymaster",
		"SESSION_REDIS_PASSWORD":        testRedisPassword,
		"SESSION_REDIS_WAIT_REPLICAS":   "1",
	})
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)
	s := ta.login(t)
	ta.bump(t, s.ID, 1)

	// A writer keeps bumping the session during the switch.
	var (
		mu       sync.Mutex
		acked    int64 = 1
		failures int
		lastOK   time.Time
	)
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, got := ta.call(t, http.MethodGet, "/session", s.ID)
			mu.Lock()
			if code == http.StatusOK {
				if got.Counter <= acked {
					t.Errorf("counter went from %d (acknowledged) to %d", acked, got.Counter)
				}
				acked, lastOK = got.Counter, time.Now()
			} else {
				failures++
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)

	ctx := context.Background()
	pc := directClient(primary.Addr, testRedisPassword)
	defer pc.Close()
	sc := directClient(sentinel.Addr, testRedisPassword)
	defer sc.Close()
	start := time.Now()
	if err := pc.Do(ctx, "CLIENT", "PAUSE", 15000, "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	waitFor(t, 5*time.Second, "replicas to reach the primary's offset", func() error {
		info, err := redisInfo(primary.Addr, testRedisPassword, "replication")
		if err != nil {
			return err
		}
		for _, r := range []*redisProc{r1, r2} {
			ri, err := redisInfo(r.Addr, testRedisPassword, "replication")
			if err != nil {
				return err
			}
			if ri["slave_repl_offset"] != info["master_repl_offset"] {
				return errf("%s at %s, primary at %s", r.Addr, ri["slave_repl_offset"], info["master_repl_offset"])
			}
		}
		return nil
	})
	if err := sc.Do(ctx, "SENTINEL", "FAILOVER", "mymaster").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	var newPrimary string
	waitFor(t, 10*time.Second, "sentinel to name a new primary", func() error {
		var err error
		if newPrimary, err = sentinelMaster(sentinel.Addr); err == nil && newPrimary == primary.Addr {
			err = errf("still the old primary")
		}
		return err
	})
	h, p, _ := net.SplitHostPort(newPrimary)
	if err := pc.Do(ctx, "REPLICAOF", h, p).Err(); err != nil {
		t.Fatalf("REPLICAOF on the old primary: %v", err)
	}
	if err := pc.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	switched := time.Now()

	// Writes must resume on the new primary.
	waitFor(t, 10*time.Second, "a write acknowledged after the switch", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !lastOK.After(switched) {
			return errf("none yet (%d failures)", failures)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-writerDone
	mu.Lock()
	defer mu.Unlock()
	t.Logf("safe planned switchover to %s: %s from pause to writes resuming, %d failed writes, counter %d",
		newPrimary, lastOK.Sub(start).Round(10*time.Millisecond), failures, acked)
	npc := directClient(newPrimary, testRedisPassword)
	defer npc.Close()
	if v, err := npc.HGet(ctx, "session:"+s.ID, "counter").Int64(); err != nil || v < acked {
		t.Fatalf("new primary holds counter %d (%v); %d was acknowledged", v, err, acked)
	}
	if code, n := ta.peek(t, s.ID); code != http.StatusOK || n < acked {
		t.Fatalf("peek %d %d, want at least %d", code, n, acked)
	}
}

// A write that meets a replica (READONLY: the primary moved, and the client has not heard
// yet) is sent again until the server takes writes, within the operation's deadline; it
// is never executed twice.
func TestRedisStoreRetriesReadOnly(t *testing.T) {
	primary := startRedisServer(t, "")
	replica := startRedisServer(t, primary.Addr)
	waitFor(t, 10*time.Second, "the replica in sync", func() error {
		info, err := redisInfo(replica.Addr, testRedisPassword, "replication")
		if err != nil || info["master_link_status"] != "up" {
			return errf("replica link %q: %v", info["master_link_status"], err)
		}
		return nil
	})
	cfg := mustConfig(t, map[string]string{
		"SESSION_MODE":           "Store",
		"SESSION_REDIS_ADDR":     replica.Addr,
		"SESSION_REDIS_PASSWORD": testRedisPassword,
	})
	store := newRedisStore(cfg, newRedisClient(cfg))
	t.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()

	// Still a replica for the whole deadline: the write fails with READONLY.
	store.opTimeout = 700 * time.Millisecond
	if _, err := store.Create(ctx, "a1"); !redis.IsReadOnlyError(err) {
		t.Fatalf("a write to a replica for good: %v, want READONLY", err)
	}
	// Promoted while the write waits: it succeeds, once.
	store.opTimeout = 5 * time.Second
	go func() {
		time.Sleep(600 * time.Millisecond)
		_ = directClient(replica.Addr, testRedisPassword).Do(ctx, "REPLICAOF", "NO", "ONE").Err()
	}()
	start := time.Now()
	if _, err := store.Create(ctx, "a2"); err != nil {
		t.Fatalf("a write across the promotion: %v", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("the write succeeded after %s, before the promotion", took)
	}
	s, err := store.Incr(ctx, "a2")
	if err != nil || s.Counter != 1 {
		t.Errorf("after one create and one incr: counter %d (%v), want 1", s.Counter, err)
	}
}
