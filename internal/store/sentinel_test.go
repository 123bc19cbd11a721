package store

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// What needs a real Sentinel (answers, subscriptions, failovers) is exercised by the
// data-path harness (make test-datapath); these tests cover the rest.

func TestPickPrimary(t *testing.T) {
	a, b, c := "a.store:6379", "b.store:6379", "c.store:6379"
	for _, tc := range []struct {
		name  string
		votes map[string]int
		prev  string
		want  string
	}{
		{"none", map[string]int{}, "", ""},
		{"unanimous", map[string]int{b: 3}, "", b},
		{"majority", map[string]int{a: 1, b: 2}, "a.store", b},
		{"tie goes to the previous primary", map[string]int{a: 1, c: 1}, "c.store", c},
		{"tie without previous goes to the smallest", map[string]int{c: 1, a: 1}, "", a},
		{"tie with an unrelated previous goes to the smallest", map[string]int{c: 1, b: 1}, "a.store", b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 20; i++ { // map order must not matter
				if got := pickPrimary(tc.votes, tc.prev); got != tc.want {
					t.Fatalf("pickPrimary(%v, %q) = %q, want %q", tc.votes, tc.prev, got, tc.want)
				}
			}
		})
	}
}

// eventClock drives handle with a controlled clock.
type eventClock struct {
	t0  time.Time
	now time.Time
}

func newEventObserver(t *testing.T) (*SentinelObserver, *storeState, *eventClock, *[]types.NamespacedName) {
	t.Helper()
	clk := &eventClock{t0: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	clk.now = clk.t0
	var notified []types.NamespacedName
	o := NewSentinelObserver(1, time.Second)
	o.now = func() time.Time { return clk.now }
	o.Notify = func(k types.NamespacedName) { notified = append(notified, k) }
	st := &storeState{
		key: types.NamespacedName{Namespace: "web", Name: "shop"}, master: "shop",
		downAfter: 3 * time.Second, downSince: map[string]time.Time{}, failoverStart: map[string]time.Time{},
	}
	return o, st, clk, &notified
}

func (c *eventClock) at(d time.Duration) { c.now = c.t0.Add(d) }

const (
	hostA = "shop-store-0.shop-store-headless.web.svc.cluster.local"
	hostB = "shop-store-1.shop-store-headless.web.svc.cluster.local"
)

func TestSwitchMeasuredFromFirstSdown(t *testing.T) {
	o, st, clk, notified := newEventObserver(t)
	clk.at(0)
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	clk.at(100 * time.Millisecond)
	o.handle(st, chOdown, "master shop "+hostA+" 6379 #quorum 2/2")
	o.handle(st, chTryFailover, "master shop "+hostA+" 6379")
	clk.at(1500 * time.Millisecond)
	// The old primary restarts as a replica and answers before the switch is announced.
	o.handle(st, chSdownClear, "master shop "+hostA+" 6379")
	clk.at(2 * time.Second)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	s := st.last
	if s == nil || s.From != hostA || s.To != hostB || !s.At.Equal(clk.t0.Add(2*time.Second)) {
		t.Fatalf("switch = %+v", s)
	}
	if s.Duration != 5*time.Second { // 2s since +sdown, plus down-after 3s
		t.Fatalf("duration = %s, want 5s", s.Duration)
	}
	if len(*notified) != 1 || (*notified)[0] != st.key {
		t.Fatalf("notified %v", *notified)
	}
	if len(st.downSince) != 0 || len(st.failoverStart) != 0 {
		t.Fatalf("episode not cleared: %v %v", st.downSince, st.failoverStart)
	}
}

func TestSdownClearedBeforeFailoverEndsTheEpisode(t *testing.T) {
	o, st, clk, _ := newEventObserver(t)
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	clk.at(time.Second)
	o.handle(st, chSdownClear, "master shop "+hostA+" 6379") // a blip, no failover
	clk.at(time.Minute)
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	clk.at(time.Minute + 1500*time.Millisecond)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	if st.last.Duration != 4500*time.Millisecond {
		t.Fatalf("duration = %s, want 4.5s (from the second +sdown)", st.last.Duration)
	}
}

func TestForcedFailoverMeasuredFromTryFailover(t *testing.T) {
	o, st, clk, _ := newEventObserver(t)
	o.handle(st, chTryFailover, "master shop "+hostA+" 6379")
	clk.at(1200 * time.Millisecond)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	if st.last.Duration != 1200*time.Millisecond {
		t.Fatalf("duration = %s, want 1.2s", st.last.Duration)
	}
}

func TestSwitchWithoutStartHasNoDuration(t *testing.T) {
	o, st, clk, _ := newEventObserver(t)
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	clk.at(11 * time.Minute) // stale: that episode did not lead to this switch
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	if st.last == nil || st.last.Duration != 0 {
		t.Fatalf("switch = %+v, want zero duration", st.last)
	}
}

func TestIgnoresOtherEvents(t *testing.T) {
	o, st, _, notified := newEventObserver(t)
	for _, ev := range [][2]string{
		{chSwitchMaster, "other " + hostA + " 6379 " + hostB + " 6379"}, // another master
		{chSwitchMaster, "shop " + hostA + " 6379"},                     // malformed
		{chSdown, "slave " + hostB + ":6379 " + hostB + " 6379 @ shop " + hostA + " 6379"},
		{chSdown, "sentinel abc 10.0.0.1 26379 @ shop " + hostA + " 6379"},
		{chSdown, "master other " + hostA + " 6379"},
		{chTryFailover, ""},
		{"+new-epoch", "7"},
	} {
		o.handle(st, ev[0], ev[1])
	}
	if st.last != nil || len(*notified) != 0 || len(st.downSince) != 0 || len(st.failoverStart) != 0 {
		t.Fatalf("state changed: last %+v notified %v down %v start %v", st.last, *notified, st.downSince, st.failoverStart)
	}
}

// observerGoroutines counts goroutines running the observer's or go-redis's code, other
// than the caller's.
func observerGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for i, g := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue // this goroutine
		}
		if bytes.Contains(g, []byte("store.(*SentinelObserver)")) || bytes.Contains(g, []byte("github.com/redis/go-redis/")) {
			n++
		}
	}
	return n
}

func waitNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for observerGoroutines() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d observer goroutines left:\n%s", observerGoroutines(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableSentinelsAndForget(t *testing.T) {
	o := NewSentinelObserver(2, 200*time.Millisecond)
	key := types.NamespacedName{Namespace: "web", Name: "shop"}
	target := Target{Cluster: key, MasterName: "shop", Sentinels: []string{closedPort(t), closedPort(t), closedPort(t)}, Password: "pw"}
	obs, err := o.Observe(context.Background(), target)
	if err == nil || obs.SentinelsReachable != 0 || obs.PrimaryHost != "" || obs.Keys != -1 {
		t.Fatalf("Observe = %+v, %v; want an error, nothing reachable, Keys -1", obs, err)
	}
	// The subscriptions wait out their backoff on timers, not on goroutines.
	o.mu.Lock()
	subs := len(o.subs)
	o.mu.Unlock()
	if subs != 3 {
		t.Fatalf("%d subscriptions kept for 3 unreachable Sentinels, want 3 (made again with backoff)", subs)
	}
	time.Sleep(300 * time.Millisecond) // let the subscriptions go round the dead Sentinels
	o.Forget(key)
	o.mu.Lock()
	subs = len(o.subs)
	o.mu.Unlock()
	if len(o.Watching(key)) != 0 || subs != 0 {
		t.Fatalf("still watching after Forget (%d subscriptions)", subs)
	}
	waitNoGoroutines(t)
	o.Forget(key) // twice is fine

	// A changed target starts over; Close ends everything.
	if _, err := o.Observe(context.Background(), target); err == nil {
		t.Fatal("want an error")
	}
	target.Sentinels = target.Sentinels[:1]
	if _, err := o.Observe(context.Background(), target); err == nil {
		t.Fatal("want an error")
	}
	o.mu.Lock()
	n := len(o.stores)
	o.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d stores kept, want 1", n)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoGoroutines(t)
	if _, err := o.Observe(context.Background(), target); err == nil {
		t.Fatal("Observe after Close: want an error")
	}
}

// A listener that accepts and never answers: every question to it lasts Timeout.
func silentListener(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

func TestConcurrencyIsBounded(t *testing.T) {
	const timeout = 150 * time.Millisecond
	o := NewSentinelObserver(2, timeout)
	defer func() {
		o.Close()
		waitNoGoroutines(t)
	}()
	silent := silentListener(t)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			key := types.NamespacedName{Namespace: "web", Name: string(rune('a' + i))}
			_, _ = o.Observe(context.Background(), Target{Cluster: key, MasterName: "shop", Sentinels: []string{silent}, Password: "pw"})
		}(i)
	}
	wg.Wait()
	// Six stores, two at a time, each waiting out the timeout once: at least three rounds.
	if elapsed := time.Since(start); elapsed < 3*timeout {
		t.Fatalf("6 silent stores with concurrency 2 took %s, want at least %s", elapsed, 3*timeout)
	}
}

func TestEverySentinelAnnouncesOneSwitch(t *testing.T) {
	o, st, clk, notified := newEventObserver(t)
	st.lastPrimary = hostA
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	clk.at(2 * time.Second)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	clk.at(2500 * time.Millisecond)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379") // the next Sentinel
	// A Sentinel that has not heard of the switch yet calls the old primary down.
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	o.handle(st, chTryFailover, "master shop "+hostA+" 6379")
	if !st.last.At.Equal(clk.t0.Add(2*time.Second)) || st.last.Duration != 5*time.Second || len(*notified) != 1 {
		t.Fatalf("switch %+v, notified %d times", st.last, len(*notified))
	}
	if len(st.downSince) != 0 || len(st.failoverStart) != 0 {
		t.Fatalf("a stale announcement started an episode: %v %v", st.downSince, st.failoverStart)
	}
	if st.lastPrimary != hostB {
		t.Fatalf("last primary %s", st.lastPrimary)
	}
}

func TestAnnouncementReplacesInferredSwitch(t *testing.T) {
	o, st, clk, notified := newEventObserver(t)
	st.lastPrimary = hostA
	o.handle(st, chSdown, "master shop "+hostA+" 6379")
	// Observe saw hostB before any Sentinel announced the switch.
	st.last, st.lastInferred, st.lastPrimary = &Switch{From: hostA, To: hostB, At: clk.t0.Add(time.Second)}, true, hostB
	clk.at(2 * time.Second)
	o.handle(st, chSwitchMaster, "shop "+hostA+" 6379 "+hostB+" 6379")
	if st.lastInferred || st.last.Duration != 5*time.Second || len(*notified) != 1 {
		t.Fatalf("switch %+v inferred %v, notified %d times", st.last, st.lastInferred, len(*notified))
	}
}
