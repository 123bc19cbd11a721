package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// clusterStore keeps sessions in memory on every app instance and replicates
// them among the instances with hashicorp/memberlist:
//
//   - membership: SWIM gossip; peers are found by resolving SESSION_PEERS_DNS
//     (a headless Service that also lists not-ready pods) every few seconds,
//     so pods that appear later are joined too;
//   - each write is sent at once to every live member as a best-effort user
//     message, and queued on a TransmitLimitedQueue so gossip re-sends it
//     (covering members this node has not met yet and lost packets);
//   - full state travels in memberlist's push-pull (LocalState /
//     MergeRemoteState): on join, so a new pod receives every existing
//     session before it reports ready, and periodically as anti-entropy.
//
// Conflicts resolve last-writer-wins on (version, node), where version is a
// hybrid clock: max(wall clock ns, previous version + 1).
type clusterStore struct {
	name string
	ttl  time.Duration
	now  func() time.Time

	mu       sync.RWMutex
	sessions map[string]clusterEntry

	ml    atomic.Pointer[memberlist.Memberlist]
	queue *memberlist.TransmitLimitedQueue

	peers             func(context.Context) ([]string, error)
	discoveryInterval time.Duration
	discovered        atomic.Bool  // first discovery round done: joined, or alone
	lastDiscoveryErr  atomic.Value // string
	logf              func(format string, args ...any)

	stop     chan struct{}
	done     sync.WaitGroup
	closeMu  sync.Mutex
	isClosed bool
}

// clusterEntry is one session as replicated between peers.
type clusterEntry struct {
	ID      string `json:"i"`
	Counter int64  `json:"c"`
	Version int64  `json:"v"`
	Node    string `json:"n"`
	Expires int64  `json:"e"` // unix ms
}

// newerThan orders two versions of the same session (last writer wins).
func (a clusterEntry) newerThan(b clusterEntry) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.Node > b.Node
}

type clusterOptions struct {
	Name              string // memberlist node name, unique per instance
	BindAddr          string // "0.0.0.0" or the pod IP
	AdvertiseAddr     string // the pod IP; empty lets memberlist pick
	Port              int    // gossip port (TCP and UDP); 0 picks a free one
	TTL               time.Duration
	Peers             func(context.Context) ([]string, error) // host:port of peers (may include self)
	DiscoveryInterval time.Duration
	PushPullInterval  time.Duration
	LogOutput         io.Writer
}

const maxQueuedBroadcasts = 4096

// dnsPeers resolves a headless Service name to one host:port per pod.
func dnsPeers(name string, port int) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		ips, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, strconv.Itoa(port)))
		}
		return out, nil
	}
}

func newClusterStore(o clusterOptions) (*clusterStore, error) {
	if o.DiscoveryInterval <= 0 {
		o.DiscoveryInterval = 5 * time.Second
	}
	if o.PushPullInterval <= 0 {
		o.PushPullInterval = 10 * time.Second
	}
	if o.BindAddr == "" {
		o.BindAddr = "0.0.0.0"
	}
	if o.LogOutput == nil {
		o.LogOutput = log.Writer()
	}
	s := &clusterStore{
		name:              o.Name,
		ttl:               o.TTL,
		now:               time.Now,
		sessions:          map[string]clusterEntry{},
		peers:             o.Peers,
		discoveryInterval: o.DiscoveryInterval,
		stop:              make(chan struct{}),
		logf:              log.New(o.LogOutput, "", log.LstdFlags).Printf,
	}
	s.lastDiscoveryErr.Store("")
	s.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := s.ml.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: 3,
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = o.Name
	mc.BindAddr = o.BindAddr
	mc.BindPort = o.Port
	mc.AdvertisePort = o.Port
	mc.AdvertiseAddr = o.AdvertiseAddr
	mc.PushPullInterval = o.PushPullInterval
	mc.DeadNodeReclaimTime = 30 * time.Second
	mc.Delegate = &clusterDelegate{s}
	mc.LogOutput = dropDebug{o.LogOutput}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("memberlist on %s:%d: %w", o.BindAddr, o.Port, err)
	}
	s.ml.Store(ml)

	s.done.Add(2)
	go s.discoveryLoop()
	go s.janitor(time.Second)
	return s, nil
}

// Addr is this member's gossip address (ip:port).
func (s *clusterStore) Addr() string { return s.ml.Load().LocalNode().Address() }

// Members counts the live members, this one included.
func (s *clusterStore) Members() int { return s.ml.Load().NumMembers() }

func (s *clusterStore) Create(_ context.Context, id string) (Session, error) {
	s.mu.Lock()
	e := clusterEntry{ID: id, Counter: 0, Node: s.name}
	s.stamp(&e, 0)
	s.sessions[id] = e
	s.mu.Unlock()
	s.replicate(e)
	return Session{ID: id}, nil
}

func (s *clusterStore) Incr(_ context.Context, id string) (Session, error) {
	e, err := s.localIncr(id)
	if err != nil {
		return Session{}, err
	}
	s.replicate(e)
	return Session{ID: id, Counter: e.Counter}, nil
}

// localIncr bumps the local copy and returns the new version to replicate.
func (s *clusterStore) localIncr(id string) (clusterEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sessions[id]
	if !ok || s.expired(e) {
		return clusterEntry{}, ErrNotFound
	}
	e.Counter++
	e.Node = s.name
	s.stamp(&e, e.Version)
	s.sessions[id] = e
	return e, nil
}

func (s *clusterStore) Get(_ context.Context, id string) (Session, error) {
	s.mu.RLock()
	e, ok := s.sessions[id]
	s.mu.RUnlock()
	if !ok || s.expired(e) {
		return Session{}, ErrNotFound
	}
	return Session{ID: id, Counter: e.Counter}, nil
}

// Ready once the first discovery round is over: this node either joined the
// peers it found (and so received their sessions by push-pull) or is alone.
func (s *clusterStore) Ready(context.Context) error {
	if !s.discovered.Load() {
		return fmt.Errorf("peer discovery has not completed yet")
	}
	return nil
}

// Close leaves the cluster gracefully (peers see "left", not "failed") and
// stops the background loops.
func (s *clusterStore) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed {
		return nil
	}
	s.isClosed = true
	close(s.stop)
	s.done.Wait()
	ml := s.ml.Load()
	leaveErr := ml.Leave(2 * time.Second)
	if err := ml.Shutdown(); err != nil {
		return err
	}
	return leaveErr
}

// stamp sets the version (hybrid clock) and expiry of a local write. Callers hold mu.
func (s *clusterStore) stamp(e *clusterEntry, prev int64) {
	now := s.now()
	e.Version = max(now.UnixNano(), prev+1)
	e.Expires = now.Add(s.ttl).UnixMilli()
}

func (s *clusterStore) expired(e clusterEntry) bool { return s.now().UnixMilli() >= e.Expires }

// merge applies a remote version of a session if it is newer. It reports
// whether the local copy changed.
func (s *clusterStore) merge(e clusterEntry) bool {
	if !validSessionID(e.ID) || s.expired(e) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.sessions[e.ID]
	if ok && !e.newerThan(cur) {
		return false
	}
	s.sessions[e.ID] = e
	return true
}

// Message framing for user messages: one type byte, then JSON.
const msgSession byte = 's'

func encodeEntry(e clusterEntry) []byte {
	b, _ := json.Marshal(e) // cannot fail: plain struct of strings and ints
	return append([]byte{msgSession}, b...)
}

// replicate pushes a local write to every live peer now and queues it for gossip.
func (s *clusterStore) replicate(e clusterEntry) {
	msg := encodeEntry(e)
	s.queue.QueueBroadcast(&sessionBroadcast{id: e.ID, msg: msg})
	ml := s.ml.Load()
	self := ml.LocalNode().Name
	for _, n := range ml.Members() {
		if n.Name == self {
			continue
		}
		// Best effort: a lost packet is covered by gossip and push-pull.
		_ = ml.SendBestEffort(n, msg)
	}
}

// discoveryLoop resolves the peers now and then and joins those that are not
// members yet, so pods started later (or back after a partition) join in.
func (s *clusterStore) discoveryLoop() {
	defer s.done.Done()
	t := time.NewTicker(s.discoveryInterval)
	defer t.Stop()
	for {
		s.discoverOnce()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *clusterStore) discoverOnce() {
	defer s.discovered.Store(true)
	if s.peers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := s.peers(ctx)
	if err != nil {
		s.noteDiscoveryError(fmt.Errorf("resolve peers: %w", err))
		return
	}
	ml := s.ml.Load()
	known := map[string]bool{ml.LocalNode().Address(): true}
	for _, n := range ml.Members() {
		known[n.Address()] = true
	}
	var join []string
	for _, a := range addrs {
		if !known[a] {
			join = append(join, a)
		}
	}
	if len(join) == 0 {
		return
	}
	// Join does a full push-pull with each peer it reaches, so after it
	// returns this node holds their sessions and they hold ours.
	_, err = ml.Join(join)
	s.noteDiscoveryError(err)
}

// noteDiscoveryError logs a discovery failure once, not on every round.
func (s *clusterStore) noteDiscoveryError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if prev, _ := s.lastDiscoveryErr.Swap(msg).(string); prev != msg && msg != "" {
		s.logf("peer discovery: %s", msg)
	}
}

// janitor drops expired sessions and caps the gossip queue.
func (s *clusterStore) janitor(every time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.sweep()
	}
}

func (s *clusterStore) sweep() {
	// Prune panics on a queue that never held a broadcast: ask first.
	if s.queue.NumQueued() > maxQueuedBroadcasts {
		s.queue.Prune(maxQueuedBroadcasts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.sessions {
		if s.expired(e) {
			delete(s.sessions, id)
		}
	}
}

// sessionBroadcast is one session write on the gossip queue. A newer write of
// the same session invalidates an older one still queued.
type sessionBroadcast struct {
	id  string
	msg []byte
}

func (b *sessionBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*sessionBroadcast)
	return ok && ob.id == b.id
}
func (b *sessionBroadcast) Name() string    { return b.id }
func (b *sessionBroadcast) Message() []byte { return b.msg }
func (b *sessionBroadcast) Finished()       {}

// clusterDelegate plugs the store into memberlist.
type clusterDelegate struct{ s *clusterStore }

func (d *clusterDelegate) NodeMeta(int) []byte { return nil }

func (d *clusterDelegate) NotifyMsg(b []byte) {
	if len(b) < 2 || b[0] != msgSession {
		return
	}
	var e clusterEntry
	if err := json.Unmarshal(b[1:], &e); err != nil {
		return
	}
	d.s.merge(e)
}

func (d *clusterDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.s.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this node's full session table, sent on join and on every
// periodic push-pull.
func (d *clusterDelegate) LocalState(bool) []byte {
	s := d.s
	s.mu.RLock()
	all := make([]clusterEntry, 0, len(s.sessions))
	for _, e := range s.sessions {
		if !s.expired(e) {
			all = append(all, e)
		}
	}
	s.mu.RUnlock()
	b, _ := json.Marshal(all)
	return b
}

func (d *clusterDelegate) MergeRemoteState(buf []byte, _ bool) {
	var all []clusterEntry
	if err := json.Unmarshal(buf, &all); err != nil {
		return
	}
	for _, e := range all {
		d.s.merge(e)
	}
}

// dropDebug filters memberlist's [DEBUG] lines (one per push-pull and stream)
// out of its log; warnings and errors pass through.
type dropDebug struct{ w io.Writer }

func (d dropDebug) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("[DEBUG]")) {
		return len(p), nil
	}
	return d.w.Write(p)
}
