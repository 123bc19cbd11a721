package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Clustered mode: several in-process memberlist instances on 127.0.0.1.

// peerList is a mutable peer source, standing in for the headless Service DNS.
type peerList struct {
	mu    sync.Mutex
	addrs []string
}

func (p *peerList) set(addrs ...string) { p.mu.Lock(); p.addrs = addrs; p.mu.Unlock() }
func (p *peerList) get(context.Context) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.addrs...), nil
}

func startClusterNode(t *testing.T, name string, peers *peerList) *clusterStore {
	t.Helper()
	s, err := newClusterStore(clusterOptions{
		Name:              name,
		BindAddr:          "127.0.0.1",
		Port:              0, // a free port; Addr() tells which
		TTL:               10 * time.Minute,
		Peers:             peers.get,
		DiscoveryInterval: 100 * time.Millisecond,
		PushPullInterval:  time.Second,
		LogOutput:         io.Discard,
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, 5*time.Second, name+" ready", func() error { return s.Ready(context.Background()) })
	return s
}

func clusterApp(t *testing.T, s *clusterStore) *testApp {
	cfg := mustConfig(t, map[string]string{"SESSION_MODE": "Clustered", "SESSION_PEERS_PORT": "4000", "POD_NAME": s.name})
	return newTestApp(t, cfg, s)
}

func waitCounter(t *testing.T, s Store, id string, want int64) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("session %s at counter %d", id[:8], want), func() error {
		got, err := s.Get(context.Background(), id)
		if err != nil {
			return err
		}
		if got.Counter != want {
			return fmt.Errorf("counter %d", got.Counter)
		}
		return nil
	})
}

// A session written on A is readable on B shortly after, and a bump on B
// reaches A and C.
func TestClusteredReplication(t *testing.T) {
	a := startClusterNode(t, "app-a", &peerList{})
	b := startClusterNode(t, "app-b", &peerList{addrs: []string{a.Addr()}})
	c := startClusterNode(t, "app-c", &peerList{addrs: []string{b.Addr()}})
	waitFor(t, 5*time.Second, "3 members everywhere", func() error {
		for _, s := range []*clusterStore{a, b, c} {
			if n := s.Members(); n != 3 {
				return fmt.Errorf("%s sees %d members", s.name, n)
			}
		}
		return nil
	})
	appA, appB, appC := clusterApp(t, a), clusterApp(t, b), clusterApp(t, c)

	sess := appA.login(t)
	waitFor(t, 2*time.Second, "session on B", func() error {
		if code, _ := appB.peek(t, sess.ID); code != http.StatusOK {
			return fmt.Errorf("B: %d", code)
		}
		return nil
	})
	appB.bump(t, sess.ID, 1)
	waitCounter(t, a, sess.ID, 1)
	waitCounter(t, c, sess.ID, 1)
	appC.bump(t, sess.ID, 2)
	waitCounter(t, a, sess.ID, 2)
	waitCounter(t, b, sess.ID, 2)

	// A burst larger than a gossip packet holds: direct sends carry it.
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = newSessionID()
		if _, err := a.Create(context.Background(), ids[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Incr(context.Background(), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*clusterStore{b, c} {
		for _, id := range ids {
			waitCounter(t, s, id, 1)
		}
	}
}

// A pod that starts later receives every existing session in the join's
// push-pull, before it reports ready.
func TestClusteredJoinLaterSync(t *testing.T) {
	a := startClusterNode(t, "app-a", &peerList{})
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = newSessionID()
		_, _ = a.Create(context.Background(), ids[i])
		for j := 0; j < i%3; j++ {
			_, _ = a.Incr(context.Background(), ids[i])
		}
	}
	b := startClusterNode(t, "app-b", &peerList{addrs: []string{a.Addr()}}) // returns once ready
	for i, id := range ids {
		got, err := b.Get(context.Background(), id)
		if err != nil || got.Counter != int64(i%3) {
			t.Fatalf("session %d on the late node: %+v %v, want counter %d", i, got, err, i%3)
		}
	}
}

// Peers that appear after start-up are found by the periodic DNS look-up:
// A and C both start alone, then C's address shows up in A's peer list.
func TestClusteredPeersAppearLater(t *testing.T) {
	peersA := &peerList{}
	a := startClusterNode(t, "app-a", peersA)
	c := startClusterNode(t, "app-c", &peerList{})
	onA, _ := a.Create(context.Background(), newSessionID())
	onC, _ := c.Create(context.Background(), newSessionID())
	if a.Members() != 1 || c.Members() != 1 {
		t.Fatalf("members before discovery: %d %d", a.Members(), c.Members())
	}
	peersA.set(a.Addr(), c.Addr()) // the DNS answer includes the node itself
	waitFor(t, 5*time.Second, "A and C to join", func() error {
		if a.Members() != 2 || c.Members() != 2 {
			return fmt.Errorf("members %d %d", a.Members(), c.Members())
		}
		return nil
	})
	waitCounter(t, c, onA.ID, 0)
	waitCounter(t, a, onC.ID, 0)
}

// Graceful shutdown leaves the cluster; the others keep the sessions.
func TestClusteredLeave(t *testing.T) {
	a := startClusterNode(t, "app-a", &peerList{})
	b := startClusterNode(t, "app-b", &peerList{addrs: []string{a.Addr()}})
	waitFor(t, 5*time.Second, "2 members", func() error {
		if a.Members() != 2 {
			return fmt.Errorf("%d", a.Members())
		}
		return nil
	})
	s, _ := b.Create(context.Background(), newSessionID())
	waitCounter(t, a, s.ID, 0)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitFor(t, 5*time.Second, "B gone from A's view", func() error {
		if a.Members() != 1 {
			return fmt.Errorf("%d", a.Members())
		}
		return nil
	})
	if got, err := a.Incr(context.Background(), s.ID); err != nil || got.Counter != 1 {
		t.Fatalf("after B left: %+v %v", got, err)
	}
}

func TestClusterMergeLastWriterWins(t *testing.T) {
	s := &clusterStore{name: "x", ttl: time.Minute, now: time.Now, sessions: map[string]clusterEntry{}}
	id := newSessionID()
	exp := time.Now().Add(time.Minute).UnixMilli()
	if !s.merge(clusterEntry{ID: id, Counter: 3, Version: 10, Node: "a", Expires: exp}) {
		t.Fatal("first version not applied")
	}
	if s.merge(clusterEntry{ID: id, Counter: 9, Version: 9, Node: "z", Expires: exp}) {
		t.Fatal("an older version overwrote a newer one")
	}
	if !s.merge(clusterEntry{ID: id, Counter: 4, Version: 10, Node: "b", Expires: exp}) {
		t.Fatal("tie not broken by node name")
	}
	if s.merge(clusterEntry{ID: id, Counter: 5, Version: 10, Node: "a", Expires: exp}) {
		t.Fatal("tie broken the wrong way")
	}
	if s.merge(clusterEntry{ID: newSessionID(), Counter: 1, Version: 99, Node: "a", Expires: 1}) {
		t.Fatal("an expired entry was merged")
	}
	if s.merge(clusterEntry{ID: "junk", Version: 99, Node: "a", Expires: exp}) {
		t.Fatal("an invalid id was merged")
	}
	got, err := s.Get(context.Background(), id)
	if err != nil || got.Counter != 4 {
		t.Fatalf("got %+v %v", got, err)
	}
	if _, err := s.Get(context.Background(), newSessionID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// A local write after a remote one gets a strictly higher version.
	s.mu.Lock()
	e := s.sessions[id]
	e.Version = time.Now().Add(time.Hour).UnixNano() // a peer whose clock runs ahead
	s.sessions[id] = e
	s.mu.Unlock()
	if _, err := s.localIncr(id); err != nil {
		t.Fatal(err)
	}
	if s.sessions[id].Version <= e.Version {
		t.Fatal("local write did not advance the version")
	}
}

// The janitor's sweep on a node that never queued a broadcast (memberlist's
// Prune panics on such a queue unless guarded), and after expiry.
func TestClusterSweep(t *testing.T) {
	a := startClusterNode(t, "app-a", &peerList{})
	a.sweep()
	id := newSessionID()
	_, _ = a.Create(context.Background(), id)
	now := time.Now().Add(11 * time.Minute)
	a.mu.Lock()
	a.now = func() time.Time { return now }
	a.mu.Unlock()
	a.sweep()
	a.mu.RLock()
	n := len(a.sessions)
	a.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d sessions left after expiry", n)
	}
}
