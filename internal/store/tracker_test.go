package store

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// fakeSentinel is a loopback RESP server answering as every Sentinel of one store named
// "shop" whose primary is primary; it counts connections and can announce a switch. The
// real Sentinel is exercised by the data-path harness; this covers the tracker's wiring.
type fakeSentinel struct {
	ln net.Listener

	mu      sync.Mutex
	primary string
	flags   string        // of the primary in SENTINEL MASTER; "master" when empty
	hold    chan struct{} // when set, SENTINEL replies are written once it is closed
	subs    map[net.Conn]bool
	open    int
	asked   int
}

func newFakeSentinel(t *testing.T, primary string) *fakeSentinel {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSentinel{ln: ln, primary: primary, subs: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.open++
			f.mu.Unlock()
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeSentinel) serve(c net.Conn) {
	rc := newRespConn(c)
	defer func() {
		f.mu.Lock()
		f.open--
		delete(f.subs, c)
		f.mu.Unlock()
		c.Close()
	}()
	for {
		v, err := rc.readValue(0)
		if err != nil {
			return
		}
		arr, _ := v.([]any)
		var args []string
		for _, a := range arr {
			s, _ := a.(string)
			args = append(args, s)
		}
		if len(args) == 0 {
			return
		}
		var out []string
		switch strings.ToUpper(args[0]) {
		case "AUTH", "CLIENT":
			_, _ = c.Write([]byte("+OK\r\n"))
			continue
		case "DBSIZE":
			_, _ = c.Write([]byte(":7\r\n"))
			continue
		case "SUBSCRIBE":
			f.mu.Lock()
			f.subs[c] = true
			f.mu.Unlock()
			var b []byte
			for i, ch := range args[1:] {
				b = append(b, "*3\r\n$9\r\nsubscribe\r\n"...)
				b = append(b, "$"+strconv.Itoa(len(ch))+"\r\n"+ch+"\r\n:"+strconv.Itoa(i+1)+"\r\n"...)
			}
			_, _ = c.Write(b)
			continue
		case "SENTINEL":
			f.mu.Lock()
			f.asked++
			p, flags, hold := f.primary, f.flags, f.hold
			f.mu.Unlock()
			if hold != nil {
				<-hold
			}
			if flags == "" {
				flags = "master"
			}
			if strings.ToUpper(args[1]) == "MASTER" {
				out = []string{"name", "shop", "ip", p, "port", "6379", "flags", flags, "down-after-milliseconds", "3000"}
			} else {
				out = []string{}
			}
		}
		b := []byte("*" + strconv.Itoa(len(out)) + "\r\n")
		for _, s := range out {
			b = append(b, "$"+strconv.Itoa(len(s))+"\r\n"+s+"\r\n"...)
		}
		_, _ = c.Write(b)
	}
}

func (f *fakeSentinel) announce(from, to string) {
	f.mu.Lock()
	f.primary = to
	var conns []net.Conn
	for c := range f.subs {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	payload := "shop " + from + " 6379 " + to + " 6379"
	msg := "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$" + strconv.Itoa(len(payload)) + "\r\n" + payload + "\r\n"
	for _, c := range conns {
		_, _ = c.Write([]byte(msg))
	}
}

func (f *fakeSentinel) stats() (open, subs, asked int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open, len(f.subs), f.asked
}

// startTracker runs an observer whose store "web/shop" has three Sentinel names, all
// served by fake (the dialer maps them, as the scale benchmark's does); it stops when the
// test ends, leaving no goroutine behind.
func startTracker(t *testing.T, fake *fakeSentinel, notify func(types.NamespacedName)) (*SentinelObserver, Target) {
	t.Helper()
	o := NewSentinelObserver(2, time.Second)
	o.Notify = notify
	o.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, fake.ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = o.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		waitNoGoroutines(t)
	})
	key := types.NamespacedName{Namespace: "web", Name: "shop"}
	return o, Target{Cluster: key, MasterName: "shop", Sentinels: []string{"s0:26379", "s1:26379", "s2:26379"}, Username: "op", Password: "pw"}
}

func TestTrackerObservesOffTheReconcilePath(t *testing.T) {
	fake := newFakeSentinel(t, hostA)
	woken := make(chan types.NamespacedName, 16)
	o, target := startTracker(t, fake, func(k types.NamespacedName) { woken <- k })
	key := target.Cluster
	if _, _, ok := o.Latest(target); ok {
		t.Fatal("Latest before any assessment: want not ok")
	}
	select {
	case k := <-woken:
		if k != key {
			t.Fatalf("woke %v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first assessment never woke the SessionCluster")
	}
	obs, err, ok := o.Latest(target)
	if !ok || err != nil || obs.PrimaryHost != hostA || obs.SentinelsReachable != 3 || obs.Keys != 7 || obs.Health.Agreeing != 3 {
		t.Fatalf("Latest = %+v, %v, %v", obs, err, ok)
	}
	if err := waitFor(5*time.Second, func() bool { return len(o.Watching(key)) == 3 }); err != nil {
		t.Fatalf("watching %v", o.Watching(key))
	}
	_, _, asked := fake.stats()
	// Reading again dials nothing and asks nothing.
	for range 10 {
		o.Latest(target)
	}
	time.Sleep(300 * time.Millisecond)
	drain(woken)
	if _, _, again := fake.stats(); again != asked {
		t.Fatalf("Latest asked the Sentinels: %d questions, then %d", asked, again)
	}

	// +switch-master: the new primary is the latest Observation at once, and wakes it.
	fake.announce(hostA, hostB)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("+switch-master woke nothing")
	}
	obs, _, _ = o.Latest(target)
	if obs.PrimaryHost != hostB || obs.LastSwitch == nil || obs.LastSwitch.From != hostA {
		t.Fatalf("after the switch: %+v", obs)
	}

	// Bounded: three subscriptions, and pooled query connections up to the workers' share.
	open, subs, _ := fake.stats()
	if subs != 3 || open > 3+2*4 {
		t.Fatalf("%d connections open, %d subscribed", open, subs)
	}
	o.Forget(key)
	if err := waitFor(5*time.Second, func() bool { open, _, _ := fake.stats(); return open == 0 }); err != nil {
		open, _, _ := fake.stats()
		t.Fatalf("%d connections left after Forget", open)
	}
}

// After +switch-master every Sentinel shows the new primary's link down for a moment, and
// announces nothing when it comes up. A store found so must be asked again soon, not at
// the next resync minutes later, or its status says NoPrimary for that long.
func TestUnhealthyPrimaryIsAskedAgainSoon(t *testing.T) {
	fake := newFakeSentinel(t, hostA)
	fake.flags = "master,disconnected"
	o, target := startTracker(t, fake, nil)
	o.Latest(target)
	if err := waitFor(5*time.Second, func() bool {
		obs, _, ok := o.Latest(target)
		return ok && obs.Health.PrimaryDown != ""
	}); err != nil {
		t.Fatal("the disconnected primary was never reported down")
	}
	fake.mu.Lock()
	fake.flags = "master"
	fake.mu.Unlock()
	start := time.Now()
	if err := waitFor(10*time.Second, func() bool {
		obs, _, _ := o.Latest(target)
		return obs.Health.PrimaryDown == "" && obs.PrimaryHost == hostA
	}); err != nil {
		obs, _, _ := o.Latest(target)
		t.Fatalf("the primary's link came back, the observation still says %q after %s", obs.Health.PrimaryDown, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("seen healthy again %s after the link came back", time.Since(start).Round(time.Millisecond))
}

// An assessment whose replies were asked for before a +switch-master, and recorded after
// it, must not undo the switch: the reconcile that follows would relabel the old primary.
func TestAssessmentDoesNotUndoAnAnnouncedSwitch(t *testing.T) {
	fake := newFakeSentinel(t, hostA)
	o, target := startTracker(t, fake, nil)
	o.Latest(target)
	if err := waitFor(5*time.Second, func() bool { return len(o.Watching(target.Cluster)) == 3 }); err != nil {
		t.Fatalf("watching %v", o.Watching(target.Cluster))
	}
	_, _, asked := fake.stats()
	hold := make(chan struct{})
	fake.mu.Lock()
	fake.hold = hold
	fake.mu.Unlock()
	type result struct {
		obs Observation
		err error
	}
	done := make(chan result, 1)
	go func() {
		obs, err := o.Observe(context.Background(), target)
		done <- result{obs, err}
	}()
	// Every Sentinel has been asked, and answers hostA once let go.
	if err := waitFor(5*time.Second, func() bool { _, _, n := fake.stats(); return n >= asked+3 }); err != nil {
		t.Fatal("the assessment never asked the Sentinels")
	}
	fake.mu.Lock()
	fake.hold = nil
	fake.mu.Unlock()
	fake.announce(hostA, hostB)
	if err := waitFor(5*time.Second, func() bool { obs, _, _ := o.Latest(target); return obs.PrimaryHost == hostB }); err != nil {
		t.Fatal("the announcement was not taken")
	}
	close(hold)
	r := <-done
	if r.err != nil || r.obs.PrimaryHost != hostB {
		t.Fatalf("the assessment begun before the switch returned primary %q (%v), want %q", r.obs.PrimaryHost, r.err, hostB)
	}
	obs, _, _ := o.Latest(target)
	if obs.PrimaryHost != hostB || obs.LastSwitch == nil || obs.LastSwitch.From != hostA || obs.LastSwitch.To != hostB {
		t.Fatalf("after the stale replies: primary %q, last switch %+v; want %s -> %s", obs.PrimaryHost, obs.LastSwitch, hostA, hostB)
	}
}

func TestUnhealthyRecheck(t *testing.T) {
	if d := unhealthyRecheck(1); d < resyncUnhealthy*8/10 || d > resyncUnhealthy*12/10 {
		t.Fatalf("first re-check after %s", d)
	}
	if d := unhealthyRecheck(3); d < 4*resyncUnhealthy*8/10 || d > 4*resyncUnhealthy*12/10 {
		t.Fatalf("third re-check after %s, want about %s", d, 4*resyncUnhealthy)
	}
	if d := unhealthyRecheck(100); d > resyncUnsettled*12/10 || d < resyncUnsettled*8/10 {
		t.Fatalf("re-check after 100 unhealthy assessments: %s, want about %s", d, resyncUnsettled)
	}
}

func TestBackoff(t *testing.T) {
	if d := backoff(1); d < retryMin*8/10 || d > retryMin*12/10 {
		t.Fatalf("first retry after %s", d)
	}
	if d := backoff(50); d > retryMax*12/10 || d < retryMax*8/10 {
		t.Fatalf("retry after 50 failures: %s, want about %s", d, retryMax)
	}
}

func TestMasterOf(t *testing.T) {
	for _, tc := range [][3]string{
		{chSwitchMaster, "shop a 6379 b 6379", "shop"},
		{chSdown, "master shop a 6379", "shop"},
		{"+role-change", "slave b:6379 b 6379 @ shop a 6379 new reported role is master", "shop"},
		{"+sdown", "sentinel 0123 10.0.0.1 26379 @ shop a 6379", "shop"},
		{"+new-epoch", "7", ""},
	} {
		if got := masterOf(tc[0], tc[1]); got != tc[2] {
			t.Errorf("masterOf(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func drain(ch chan types.NamespacedName) {
	for len(ch) > 0 {
		<-ch
	}
}

func waitFor(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func TestDelayQueue(t *testing.T) {
	q := newDelayQueue()
	defer q.shutdown()
	ctx := context.Background()
	a, b := types.NamespacedName{Name: "a"}, types.NamespacedName{Name: "b"}
	q.addAfter(a, time.Hour)
	q.addAfter(b, 50*time.Millisecond)
	q.addAfter(a, 0) // sooner wins; still one entry
	if k, _ := q.get(ctx); k != a {
		t.Fatalf("first %v, want a", k)
	}
	q.addAfter(a, 0) // while a is worked on: comes back after done
	start := time.Now()
	if k, _ := q.get(ctx); k != b || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("second %v after %s, want b after its delay", k, time.Since(start))
	}
	q.done(b)
	q.done(a)
	if k, _ := q.get(ctx); k != a {
		t.Fatalf("third %v, want a again", k)
	}
	q.done(a)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if k, ok := q.get(cctx); ok {
		t.Fatalf("queue not empty: %v", k)
	}
}
