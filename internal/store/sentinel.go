package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// DefaultClientName names every connection the observer opens (CLIENT SETNAME), so that
// CLIENT LIST on a Sentinel or a server tells them apart from the apps'.
const DefaultClientName = "session-operator"

// The Sentinel event channels the observer follows for the switch record; HealthEvents
// are followed as well.
const (
	chSwitchMaster = "+switch-master"
	chSdown        = "+sdown"
	chSdownClear   = "-sdown"
	chOdown        = "+odown"
	chTryFailover  = "+try-failover"
)

// staleEpisode bounds how long before a switch its +sdown or +try-failover may be.
const staleEpisode = 10 * time.Minute

// Defaults of the observer's bounds (the manager's flags).
const (
	// DefaultMaxConnections caps the connections the observer holds: one subscription per
	// watched Sentinel, plus the query connections of the workers. A subscription costs
	// its socket and a few hundred bytes in the manager (no goroutine and no buffer: one
	// loop reads them all) and none of its CPU while the Sentinel is quiet.
	DefaultMaxConnections = 16384
	// DefaultResync is how often a store whose Sentinels are all subscribed to is asked
	// again although none of them announced anything.
	DefaultResync = 5 * time.Minute
)

const (
	// resyncUnsettled is how often a store is asked again while it has no primary or
	// not every watched Sentinel is subscribed to.
	resyncUnsettled = 30 * time.Second
	// retryMin and retryMax bound the backoff for a store no Sentinel of which answers,
	// and for a subscription that cannot be made.
	retryMin = 2 * time.Second
	retryMax = 5 * time.Minute
	// resyncUnhealthy is the first re-check of a store whose Sentinels name a primary that
	// cannot take writes (or whose servers include another primary), doubled per such
	// assessment in a row up to resyncUnsettled. Sentinel announces nothing when its link
	// to a newly promoted primary comes up: right after +switch-master every Sentinel
	// shows the new primary disconnected for a second or so, and only asking again says
	// when that ended.
	resyncUnhealthy = time.Second
	// eventSettle lets a burst of announcements (a failover makes a dozen) end in one
	// re-assessment.
	eventSettle = 200 * time.Millisecond
)

// DialFunc opens a connection. The scale benchmark maps the stores' addresses to a
// simulated Sentinel with one; nil dials the address.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// SentinelObserver follows every store's Sentinels at a bounded cost, off the reconcile
// path.
//
// Assessing a store asks each of its Sentinels SENTINEL MASTER and SENTINEL REPLICAS (at
// once, each bounded by Timeout) and samples the primary's DBSIZE. The primary is the
// address most Sentinels name; a tie goes to the primary reported last time, else to the
// smallest address, so the same answers always give the same primary. Health comes from
// the same replies (assessHealth).
//
// Events: each Sentinel address has at most one subscription connection, whatever the
// number of stores it serves, to +switch-master, +sdown, -sdown, +odown, +try-failover
// and HealthEvents; its messages are dispatched by master name. A store watches
// WatchersPerStore of its Sentinels (all by default: the leader of a failover is the only
// one to announce +try-failover, and the first +sdown of any of them is the best estimate
// of when the primary went away). The first +switch-master of a switch becomes the
// store's primary and LastSwitch at once and calls Notify; every announcement schedules a
// re-assessment shortly after. A subscription that fails is made again with a jittered
// exponential backoff up to retryMax, so unreachable Sentinels cost a dial every few
// minutes, not every few seconds. Dead peers are found by TCP keepalive, not by pings.
//
// Tracking (Latest, after Start): Concurrency workers assess the tracked stores, each
// again after Resync while it is settled and watched, sooner while it is not, within
// seconds while its primary cannot take writes (backing off to the unsettled interval),
// with backoff while no Sentinel answers; a reconcile reads the latest Observation without
// dialing, and Notify is called only when an Observation changed (the key count aside).
//
// Connections: at most MaxConnections at once. Query connections come from a shared
// pool sized for the workers (idle ones are kept, a few per worker, least recently used
// closed first); subscriptions take the rest, and a store whose subscription waits for a
// free slot is asked at the unsettled interval instead. Observe asks one store at once,
// synchronously, with the same machinery (the data-path harness uses it).
type SentinelObserver struct {
	// Timeout bounds one question to one server, and one dial.
	Timeout time.Duration
	// Notify, when set, is called with the store's SessionCluster when its Observation
	// changed: a new primary announced (+switch-master, at once) or an assessment that
	// differs from the last. It must not block.
	Notify func(types.NamespacedName)
	// ClientName is sent as CLIENT SETNAME on every connection; DefaultClientName if empty.
	ClientName string
	// Dial opens connections; nil dials with TCP keepalive.
	Dial DialFunc
	// MaxConnections caps the connections held at once; 0 is DefaultMaxConnections.
	MaxConnections int
	// WatchersPerStore is how many of a store's Sentinels are subscribed to; 0 is all.
	WatchersPerStore int
	// Resync is how often a settled, watched store is asked again; 0 is DefaultResync.
	Resync time.Duration

	concurrency int
	sem         chan struct{} // bounds stores asked at once
	now         func() time.Time

	initOnce sync.Once
	pool     *connPool
	subSlots chan struct{}
	readers  readers

	mu      sync.Mutex
	stores  map[types.NamespacedName]*storeState
	subs    map[string]*subscription
	closed  bool
	queue   *delayQueue // nil until Start
	pending map[types.NamespacedName]time.Duration
}

// NewSentinelObserver returns an observer asking at most concurrency stores at once.
func NewSentinelObserver(concurrency int, timeout time.Duration) *SentinelObserver {
	concurrency = max(1, concurrency)
	return &SentinelObserver{
		Timeout:     timeout,
		concurrency: concurrency,
		sem:         make(chan struct{}, concurrency),
		now:         time.Now,
		stores:      map[types.NamespacedName]*storeState{},
		subs:        map[string]*subscription{},
		pending:     map[types.NamespacedName]time.Duration{},
	}
}

// storeState is what the observer keeps for one store.
type storeState struct {
	key     types.NamespacedName
	master  string
	fp      string // fingerprint of the target: a change starts over
	target  Target
	watched []string // Sentinels subscribed to for this store

	// Guarded by o.mu.
	tracked bool

	// Guarded by mu: written by the subscriptions and the assessments.
	mu            sync.Mutex
	assessed      bool
	obs           Observation
	err           error
	failures      int // assessments in a row no Sentinel answered
	unhealthy     int // assessments in a row that found the primary unable to take writes
	downAfter     time.Duration
	downSince     map[string]time.Time // primary host -> first +sdown (or +odown) seen
	failoverStart map[string]time.Time // primary host -> first +try-failover seen
	last          *Switch
	lastInferred  bool
	lastPrimary   string
	announced     int      // +switch-master announcements taken, to tell replies that predate one
	primaries     []string // primary addresses DBSIZE was asked at, whose idle connections Forget closes
}

// subscription is the one event connection to one Sentinel address, shared by every
// store that watches it.
type subscription struct {
	addr               string
	username, password string
	cancel             context.CancelFunc
	done               chan struct{}

	// Guarded by o.mu.
	stores  map[types.NamespacedName]*storeState
	conn    *respConn
	timer   *time.Timer // the pause before connecting again
	live    bool
	wasLive bool
}

func fingerprint(t Target) string {
	return t.MasterName + "\x00" + strings.Join(t.Sentinels, ",") + "\x00" + t.Username + "\x00" + t.Password
}

func (o *SentinelObserver) init() {
	o.initOnce.Do(func() {
		maxConns := o.MaxConnections
		if maxConns <= 0 {
			maxConns = DefaultMaxConnections
		}
		// The workers' questions: every Sentinel of a store and its primary at once.
		query := min(max(4, o.concurrency*4), max(1, maxConns/2))
		o.pool = newConnPool(query)
		o.subSlots = make(chan struct{}, max(1, maxConns-query))
		o.readers = newReaders()
	})
}

func (o *SentinelObserver) dialer() DialFunc {
	if o.Dial != nil {
		return o.Dial
	}
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
	return d.DialContext
}

func (o *SentinelObserver) clientName() string {
	if o.ClientName != "" {
		return o.ClientName
	}
	return DefaultClientName
}

// Start runs the workers that keep the tracked stores observed until ctx ends. It is a
// manager Runnable.
func (o *SentinelObserver) Start(ctx context.Context) error {
	o.init()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return errors.New("sentinel observer closed")
	}
	q := newDelayQueue()
	o.queue = q
	for k, d := range o.pending {
		q.addAfter(k, d)
	}
	o.pending = nil
	o.mu.Unlock()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, ok := q.get(ctx)
				if !ok {
					return
				}
				o.assessTracked(ctx, key)
				q.done(key)
			}
		}()
	}
	<-ctx.Done()
	q.shutdown()
	wg.Wait()
	return o.Close()
}

// schedule asks for an assessment of the store after d; before Start it is remembered.
func (o *SentinelObserver) schedule(key types.NamespacedName, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.scheduleLocked(key, d)
}

func (o *SentinelObserver) scheduleLocked(key types.NamespacedName, d time.Duration) {
	switch {
	case o.closed:
	case o.queue != nil:
		o.queue.addAfter(key, d)
	default:
		if prev, ok := o.pending[key]; !ok || d < prev {
			o.pending[key] = d
		}
	}
}

// Latest keeps the store tracked and returns its latest Observation without asking
// anyone; ok is false until its first assessment, which it schedules. Notify is called
// when that assessment is done.
func (o *SentinelObserver) Latest(t Target) (obs Observation, err error, ok bool) {
	st, err := o.state(t, true)
	if err != nil {
		return Observation{Keys: -1}, err, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.assessed {
		return Observation{Keys: -1}, nil, false
	}
	return st.snapshot(), st.err, true
}

func (st *storeState) snapshot() Observation {
	obs := st.obs
	if obs.LastSwitch != nil {
		s := *obs.LastSwitch
		obs.LastSwitch = &s
	}
	obs.Health.OtherPrimaries = append([]string(nil), obs.Health.OtherPrimaries...)
	return obs
}

// Observe asks every Sentinel of t now, and records the answer as the store's latest.
func (o *SentinelObserver) Observe(ctx context.Context, t Target) (Observation, error) {
	select {
	case o.sem <- struct{}{}:
		defer func() { <-o.sem }()
	case <-ctx.Done():
		return Observation{Keys: -1}, ctx.Err()
	}
	st, err := o.state(t, false)
	if err != nil {
		return Observation{Keys: -1}, err
	}
	return o.assess(ctx, st)
}

// assessTracked is one worker's turn on a store: ask, then schedule the next turn.
func (o *SentinelObserver) assessTracked(ctx context.Context, key types.NamespacedName) {
	o.mu.Lock()
	st := o.stores[key]
	o.mu.Unlock()
	if st == nil || ctx.Err() != nil {
		return
	}
	select {
	case o.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	obs, err := o.assess(ctx, st)
	<-o.sem
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stores[key] != st || !st.tracked {
		return
	}
	o.scheduleLocked(key, o.nextCheck(st, obs, err))
}

// nextCheck is when a store is asked again; o.mu is held.
func (o *SentinelObserver) nextCheck(st *storeState, obs Observation, err error) time.Duration {
	st.mu.Lock()
	failures, unhealthy := st.failures, st.unhealthy
	st.mu.Unlock()
	if err != nil && obs.SentinelsReachable == 0 {
		return backoff(failures)
	}
	if unhealthy > 0 {
		return unhealthyRecheck(unhealthy)
	}
	if obs.PrimaryHost == "" || obs.SentinelsReachable < len(st.target.Sentinels) {
		return resyncUnsettled
	}
	for _, addr := range st.watched {
		if s := o.subs[addr]; s == nil || !s.live {
			return resyncUnsettled
		}
	}
	if o.Resync > 0 {
		return jitter(o.Resync)
	}
	return jitter(DefaultResync)
}

// backoff is retryMin doubled per failure in a row, at most retryMax, jittered.
func backoff(failures int) time.Duration {
	d := retryMin
	for i := 1; i < failures && d < retryMax; i++ {
		d *= 2
	}
	return jitter(min(d, retryMax))
}

// unhealthyRecheck is resyncUnhealthy doubled per unhealthy assessment in a row, at most
// resyncUnsettled, jittered: a failover's moment of disconnected links is seen to end
// within a second or two, and a primary that stays down costs a question every 30 s.
func unhealthyRecheck(unhealthy int) time.Duration {
	d := resyncUnhealthy
	for i := 1; i < unhealthy && d < resyncUnsettled; i++ {
		d *= 2
	}
	return jitter(min(d, resyncUnsettled))
}

// jitter spreads d over [0.8d, 1.2d) so that stores created together are not asked
// together for ever.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sentinelReply is what one Sentinel said about one store.
type sentinelReply struct {
	master   map[string]string // nil when it does not know the master
	replicas []map[string]string
	err      error // the Sentinel could not be asked
}

// assessAttempts bounds how often an assessment asks again because a switch was
// announced while it was asking.
const assessAttempts = 3

// assess asks every Sentinel of the store and samples its primary, records the result
// and calls Notify when the Observation changed.
//
// Replies asked for before a +switch-master announcement may name the replaced primary;
// recorded after it, they would undo the switch (and a reconcile would relabel the dead
// server as primary). So an assessment during which a switch was announced asks again.
func (o *SentinelObserver) assess(ctx context.Context, st *storeState) (Observation, error) {
	for attempt := 1; ; attempt++ {
		st.mu.Lock()
		announced := st.announced
		st.mu.Unlock()
		obs, err := o.ask(ctx, st)
		if out, ok := o.record(st, obs, err, announced, attempt == assessAttempts); ok {
			return out, err
		}
	}
}

// ask asks every Sentinel of the store and samples its primary.
func (o *SentinelObserver) ask(ctx context.Context, st *storeState) (Observation, error) {
	t := st.target
	replies := make([]sentinelReply, len(t.Sentinels))
	var wg sync.WaitGroup
	for i, addr := range t.Sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = o.askSentinel(ctx, addr, t)
		}()
	}
	wg.Wait()

	obs := Observation{Keys: -1}
	votes := map[string]int{}
	var errs []error
	var masters []map[string]string
	var replicas [][]map[string]string
	var downAfter time.Duration
	for i, r := range replies {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Sentinels[i], r.err))
			continue
		}
		obs.SentinelsReachable++
		if r.master == nil {
			continue
		}
		masters = append(masters, r.master)
		replicas = append(replicas, r.replicas)
		if ip, port := r.master["ip"], r.master["port"]; ip != "" && port != "" {
			votes[net.JoinHostPort(ip, port)]++
		}
		if ms, err := strconv.ParseInt(r.master["down-after-milliseconds"], 10, 64); err == nil {
			downAfter = time.Duration(ms) * time.Millisecond
		}
	}

	st.mu.Lock()
	if downAfter > 0 {
		st.downAfter = downAfter
	}
	primaryAddr := pickPrimary(votes, st.lastPrimary)
	if l := st.last; l != nil && !st.lastInferred && primaryAddr != "" && hostOf(primaryAddr) == l.From {
		// A switch was announced, and the Sentinels that have not heard of it yet still
		// outvote those that have: the announced, newer configuration wins.
		for addr, n := range votes {
			if n > 0 && hostOf(addr) == l.To {
				primaryAddr = addr
			}
		}
	}
	st.mu.Unlock()
	if primaryAddr != "" {
		st.mu.Lock()
		if !containsString(st.primaries, primaryAddr) {
			st.primaries = append(st.primaries, primaryAddr)
		}
		st.mu.Unlock()
		obs.PrimaryHost = hostOf(primaryAddr)
	}
	obs.Health = assessHealth(obs.PrimaryHost, masters, replicas)
	if primaryAddr != "" && obs.Health.PrimaryDown == "" {
		// A primary the Sentinels see down (frozen, say) would hold this assessment, and
		// so the status that reports it, for the whole timeout.
		obs.Keys = o.dbsize(ctx, st, primaryAddr)
	}

	if obs.SentinelsReachable == 0 && len(errs) > 0 {
		return obs, errors.Join(errs...)
	}
	return obs, nil
}

// record makes obs the store's latest Observation, unless a switch was announced since
// the assessment began (announced is the count then): it then reports !ok, for the
// caller to ask again, or on its last attempt keeps the announced primary.
func (o *SentinelObserver) record(st *storeState, obs Observation, err error, announced int, last bool) (Observation, bool) {
	st.mu.Lock()
	stale := st.announced != announced
	if stale && !last {
		st.mu.Unlock()
		return Observation{}, false
	}
	if stale && obs.PrimaryHost != "" {
		obs.PrimaryHost = st.lastPrimary
	}
	if obs.PrimaryHost != "" {
		if st.lastPrimary != "" && st.lastPrimary != obs.PrimaryHost &&
			(st.last == nil || st.last.From != st.lastPrimary || st.last.To != obs.PrimaryHost) {
			// The primary changed and no event said so (the subscription was down at the
			// time): record the switch as seen now, its start unknown.
			st.last = &Switch{From: st.lastPrimary, To: obs.PrimaryHost, At: o.clock()}
			st.lastInferred = true
		}
		st.lastPrimary = obs.PrimaryHost
	}
	if st.last != nil {
		s := *st.last
		obs.LastSwitch = &s
	}
	if err != nil {
		st.failures++
	} else {
		st.failures = 0
	}
	if obs.Health.PrimaryDown != "" || len(obs.Health.OtherPrimaries) > 0 {
		st.unhealthy++
	} else {
		st.unhealthy = 0
	}
	changed := !st.assessed || !sameObservation(st.obs, obs) || (st.err == nil) != (err == nil)
	st.assessed, st.obs, st.err = true, obs, err
	out := st.snapshot()
	st.mu.Unlock()
	if changed && o.Notify != nil {
		o.Notify(st.key)
	}
	return out, true
}

// sameObservation compares what a reconcile acts on; the key count is a sample for a
// metric and changes all the time.
func sameObservation(a, b Observation) bool {
	a.Keys, b.Keys = 0, 0
	return reflect.DeepEqual(a, b)
}

// askSentinel asks one Sentinel SENTINEL MASTER and SENTINEL REPLICAS in one round trip.
func (o *SentinelObserver) askSentinel(ctx context.Context, addr string, t Target) sentinelReply {
	var r sentinelReply
	err := o.query(ctx, addr, t.Username, t.Password, func(rc *respConn) error {
		timeout := o.timeout()
		if err := rc.send(timeout, []string{"SENTINEL", "MASTER", t.MasterName}, []string{"SENTINEL", "REPLICAS", t.MasterName}); err != nil {
			return err
		}
		mv, err := rc.read(timeout)
		if err != nil {
			return err
		}
		rv, err := rc.read(timeout)
		if err != nil {
			return err
		}
		if e, ok := mv.(respError); ok {
			if strings.Contains(string(e), "No such master") {
				return nil // reachable, knows no primary
			}
			r.err = e
			return nil
		}
		if r.master, err = fieldMap(mv); err != nil {
			r.err = err
			return nil
		}
		if r.replicas, err = fieldMaps(rv); err != nil {
			r.replicas = nil
		}
		return nil
	})
	if err != nil {
		r.err = err
	}
	return r
}

// dbsize samples the primary's key count; -1 when it cannot.
func (o *SentinelObserver) dbsize(ctx context.Context, st *storeState, addr string) int64 {
	n := int64(-1)
	_ = o.query(ctx, addr, st.target.Username, st.target.Password, func(rc *respConn) error {
		v, err := rc.do(o.timeout(), "DBSIZE")
		if err != nil {
			var re respError
			if errors.As(err, &re) {
				return nil
			}
			return err
		}
		if k, ok := v.(int64); ok {
			n = k
		}
		return nil
	})
	return n
}

// query runs fn on a pooled connection to addr. A connection error on a reused
// connection (closed by the peer while idle) is retried once on a new one.
func (o *SentinelObserver) query(ctx context.Context, addr, username, password string, fn func(*respConn) error) error {
	o.init()
	key := addr + "\x00" + username + "\x00" + password
	for attempt := 0; ; attempt++ {
		rc, reused, err := o.pool.get(ctx, key, func() (*respConn, error) {
			return helloResp(ctx, o.dialer(), addr, o.timeout(), username, password, o.clientName())
		})
		if err != nil {
			return err
		}
		if err := fn(rc); err != nil {
			o.pool.discard(rc)
			if reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			return err
		}
		o.pool.put(key, rc)
		return nil
	}
}

// pickPrimary is the address most Sentinels named; a tie goes to prev (the primary
// reported last time) when it is among the tied, else to the smallest address.
func pickPrimary(votes map[string]int, prevHost string) string {
	best, bestN := "", 0
	addrs := make([]string, 0, len(votes))
	for a := range votes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		n := votes[a]
		switch {
		case n > bestN:
			best, bestN = a, n
		case n == bestN && prevHost != "" && hostOf(a) == prevHost && hostOf(best) != prevHost:
			best = a
		}
	}
	return best
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// state returns the store's state, made anew (and its subscriptions started) on first
// sight or when the target changed. A tracked store is assessed by the workers.
func (o *SentinelObserver) state(t Target, track bool) (*storeState, error) {
	o.init()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("sentinel observer closed")
	}
	fp := fingerprint(t)
	if st, ok := o.stores[t.Cluster]; ok && st.fp == fp {
		if track && !st.tracked {
			st.tracked = true
			o.scheduleLocked(st.key, 0)
		}
		return st, nil
	} else if ok {
		o.dropLocked(st)
	}
	st := &storeState{
		key: t.Cluster, master: t.MasterName, fp: fp,
		target:        Target{Cluster: t.Cluster, MasterName: t.MasterName, Sentinels: append([]string(nil), t.Sentinels...), Username: t.Username, Password: t.Password},
		tracked:       track,
		downSince:     map[string]time.Time{},
		failoverStart: map[string]time.Time{},
		obs:           Observation{Keys: -1},
	}
	st.watched = dedup(st.target.Sentinels)
	if w := o.WatchersPerStore; w > 0 && w < len(st.watched) {
		st.watched = st.watched[:w]
	}
	o.stores[t.Cluster] = st
	for _, addr := range st.watched {
		s := o.subs[addr]
		if s == nil {
			ctx, cancel := context.WithCancel(context.Background())
			s = &subscription{addr: addr, username: t.Username, password: t.Password, cancel: cancel,
				done: make(chan struct{}), stores: map[types.NamespacedName]*storeState{}}
			o.subs[addr] = s
			go o.connect(ctx, s, 0)
		}
		s.stores[st.key] = st
	}
	if track {
		o.scheduleLocked(st.key, 0)
	}
	return st, nil
}

func dedup(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !containsString(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Forget drops a deleted SessionCluster's store: its subscriptions end when no other
// store watches their Sentinel, its idle connections are closed, and Forget waits for
// the subscriptions it ended.
func (o *SentinelObserver) Forget(cluster types.NamespacedName) {
	o.mu.Lock()
	st, ok := o.stores[cluster]
	var ended []chan struct{}
	if ok {
		ended = o.dropLocked(st)
	}
	o.mu.Unlock()
	for _, d := range ended {
		<-d
	}
}

// dropLocked forgets a store and ends the subscriptions nobody else needs; o.mu is held.
func (o *SentinelObserver) dropLocked(st *storeState) []chan struct{} {
	delete(o.stores, st.key)
	var ended []chan struct{}
	for _, addr := range st.watched {
		s := o.subs[addr]
		if s == nil {
			continue
		}
		delete(s.stores, st.key)
		if len(s.stores) == 0 {
			delete(o.subs, addr)
			s.cancel()
			if s.conn != nil {
				s.conn.close() // its reader ends it
			}
			if s.timer != nil && s.timer.Stop() {
				s.timer = nil
				close(s.done) // it was pausing: nothing else will
			}
			ended = append(ended, s.done)
		}
	}
	if o.pool != nil {
		st.mu.Lock()
		primaries := append([]string(nil), st.primaries...)
		st.mu.Unlock()
		o.pool.closeIdle(func(key string) bool {
			addr, _, _ := strings.Cut(key, "\x00")
			return containsString(st.target.Sentinels, addr) || containsString(primaries, addr)
		})
	}
	return ended
}

// Close releases every connection and ends every subscription.
func (o *SentinelObserver) Close() error {
	o.mu.Lock()
	o.closed = true
	var ended []chan struct{}
	for _, st := range o.stores {
		ended = append(ended, o.dropLocked(st)...)
	}
	q := o.queue
	o.mu.Unlock()
	if q != nil {
		q.shutdown()
	}
	for _, d := range ended {
		<-d
	}
	if o.pool != nil {
		o.pool.closeIdle(func(string) bool { return true })
	}
	if o.readers != nil {
		o.readers.stop()
	}
	return nil
}

// Connections reports the connections held: subscriptions and pooled query connections
// (idle or in use), and the cap.
func (o *SentinelObserver) Connections() (subscriptions, queries, capacity int) {
	o.init()
	return len(o.subSlots), o.pool.open(), cap(o.subSlots) + o.pool.max
}

// subscribedChannels are the channels every subscription follows.
func subscribedChannels() []string {
	chans := []string{chSwitchMaster, chSdown, chSdownClear, chOdown, chTryFailover}
	for _, c := range HealthEvents {
		if !containsString(chans, c) {
			chans = append(chans, c)
		}
	}
	return chans
}

// connect makes the subscription to one Sentinel, and makes it again (at once after a
// connection that worked, with backoff after failures) until no store watches that
// Sentinel. Between attempts nothing waits but a timer, and a live subscription is
// followed by the shared readers: a fleet of quiet Sentinels costs no goroutines.
func (o *SentinelObserver) connect(ctx context.Context, s *subscription, failures int) {
	if ctx.Err() != nil {
		close(s.done)
		return
	}
	// A connection slot first: past the cap, the store is asked more often instead.
	select {
	case o.subSlots <- struct{}{}:
	case <-ctx.Done():
		close(s.done)
		return
	}
	rc := o.handshake(ctx, s)
	if rc == nil {
		<-o.subSlots
		o.retry(ctx, s, failures+1)
		return
	}
	o.readers.follow(rc, func(v any) { o.message(s, v) }, func() {
		o.mu.Lock()
		s.conn, s.live = nil, false
		o.mu.Unlock()
		<-o.subSlots
		o.retry(ctx, s, 0)
	})
}

// retry connects again after a pause, or ends the subscription when ctx has.
func (o *SentinelObserver) retry(ctx context.Context, s *subscription, failures int) {
	wait := 100 * time.Millisecond
	if failures > 0 {
		wait = backoff(failures)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ctx.Err() != nil { // dropLocked cancels under o.mu: it saw no timer to stop
		close(s.done)
		return
	}
	s.timer = time.AfterFunc(wait, func() {
		o.mu.Lock()
		s.timer = nil
		o.mu.Unlock()
		o.connect(ctx, s, failures)
	})
}

// handshake dials the Sentinel and subscribes; nil when either fails (the connection is
// closed then).
func (o *SentinelObserver) handshake(ctx context.Context, s *subscription) *respConn {
	timeout := o.timeout()
	rc, hellos, err := dialResp(ctx, o.dialer(), s.addr, timeout, s.username, s.password, o.clientName())
	if err != nil {
		if rc != nil {
			rc.close()
		}
		return nil
	}
	o.mu.Lock()
	if ctx.Err() != nil { // dropped meanwhile: dropLocked did not see this connection
		o.mu.Unlock()
		rc.close()
		return nil
	}
	s.conn = rc
	o.mu.Unlock()
	fail := func() *respConn {
		o.mu.Lock()
		s.conn = nil
		o.mu.Unlock()
		rc.close()
		return nil
	}
	chans := subscribedChannels()
	if err := rc.send(timeout, append([]string{"SUBSCRIBE"}, chans...)); err != nil {
		return fail()
	}
	// The hello replies, then one confirmation per channel, so that a dead Sentinel or a
	// refused password counts as a failure here.
	for range hellos + len(chans) {
		v, err := rc.read(timeout)
		if err != nil {
			return fail()
		}
		if _, ok := v.(respError); ok {
			return fail()
		}
	}
	o.mu.Lock()
	s.live = true
	if s.wasLive {
		// Announcements may have been missed while unsubscribed: ask the stores again.
		// (The first subscription needs no such turn: a store still unsettled is asked
		// again at resyncUnsettled.)
		for key, st := range s.stores {
			if st.tracked {
				o.scheduleLocked(key, eventSettle)
			}
		}
	}
	s.wasLive = true
	o.mu.Unlock()
	return rc
}

// message handles one value read from a subscription.
func (o *SentinelObserver) message(s *subscription, v any) {
	msg, ok := v.([]any)
	if !ok || len(msg) != 3 {
		return
	}
	kind, _ := msg[0].(string)
	channel, _ := msg[1].(string)
	payload, _ := msg[2].(string)
	if kind == "message" {
		o.dispatch(s, channel, payload)
	}
}

// masterOf is the master an announcement is about: "<name> ..." for +switch-master,
// "master <name> ..." for the master itself, "... @ <name> <ip> <port>" for a replica or
// a Sentinel.
func masterOf(channel, payload string) string {
	f := strings.Fields(payload)
	switch {
	case channel == chSwitchMaster && len(f) > 0:
		return f[0]
	case len(f) >= 2 && f[0] == "master":
		return f[1]
	}
	for i, x := range f {
		if x == "@" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// dispatch hands one announcement to the stores it is about.
func (o *SentinelObserver) dispatch(s *subscription, channel, payload string) {
	master := masterOf(channel, payload)
	if master == "" {
		return
	}
	o.mu.Lock()
	var targets []*storeState
	for _, st := range s.stores {
		if st.master == master {
			targets = append(targets, st)
		}
	}
	o.mu.Unlock()
	for _, st := range targets {
		o.handle(st, channel, payload)
		o.mu.Lock()
		if st.tracked && o.stores[st.key] == st {
			o.scheduleLocked(st.key, eventSettle)
		}
		o.mu.Unlock()
	}
}

// handle applies one Sentinel event to the store's state.
func (o *SentinelObserver) handle(st *storeState, channel, payload string) {
	now := o.clock()
	f := strings.Fields(payload)
	switch channel {
	case chSwitchMaster:
		// <master name> <old host> <old port> <new host> <new port>
		if len(f) < 5 || f[0] != st.master {
			return
		}
		from, to := f[1], f[3]
		st.mu.Lock()
		if st.last != nil && st.last.From == from && st.last.To == to && !st.lastInferred {
			st.mu.Unlock()
			return // another Sentinel announcing the same switch
		}
		down, start := st.downSince[from], st.failoverStart[from]
		// An episode older than a few failover attempts did not lead to this switch (a
		// failover that never finished, then much later another one).
		if now.Sub(down) > staleEpisode {
			down = time.Time{}
		}
		if now.Sub(start) > staleEpisode {
			start = time.Time{}
		}
		st.last = &Switch{From: from, To: to, At: now, Duration: switchDuration(now, down, start, st.downAfter)}
		st.lastInferred = false
		st.announced++
		st.lastPrimary = to
		delete(st.downSince, from)
		delete(st.failoverStart, from)
		if st.assessed {
			// The announcement is the news: a reconcile relabels the pods now, and the
			// re-assessment that follows fills in the rest.
			s := *st.last
			st.obs.PrimaryHost, st.obs.LastSwitch = to, &s
		}
		st.mu.Unlock()
		if o.Notify != nil {
			o.Notify(st.key)
		}
	case chSdown, chOdown, chTryFailover, chSdownClear:
		// master <master name> <host> <port> [...]
		if len(f) < 4 || f[0] != "master" || f[1] != st.master {
			return
		}
		host := f[2]
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.lastPrimary != "" && host != st.lastPrimary {
			// About a primary already replaced: a Sentinel that has not heard of the
			// switch yet. It must not start an episode a later switch would be timed by.
			return
		}
		switch channel {
		case chSdown, chOdown:
			if _, ok := st.downSince[host]; !ok {
				st.downSince[host] = now
			}
		case chTryFailover:
			if _, ok := st.failoverStart[host]; !ok {
				st.failoverStart[host] = now
			}
		case chSdownClear:
			// The primary answers again. Before any failover that ends the episode, once
			// every Sentinel says so; this one's word is enough to restart the clock only
			// when no failover began. Once one began it goes on (the old primary restarting
			// as a replica answers too), and the switch is timed from the first +sdown.
			if _, failing := st.failoverStart[host]; !failing {
				delete(st.downSince, host)
			}
		}
	}
}

// switchDuration is how long a failover took, from when the old primary stopped
// answering to the switch. A Sentinel calls a primary down (+sdown) when it has not
// answered for down-after, so that moment is the first +sdown (of any Sentinel) minus
// down-after, and the duration is switch - first +sdown + down-after. Sentinels ping once
// a second, so the old primary may have gone up to a second before. A failover nobody saw
// as a failure (SENTINEL FAILOVER, e.g. a pod handing over in its preStop hook) is timed
// from +try-failover. Zero when neither was seen (the subscriptions started mid-way).
func switchDuration(at, downSince, failoverStart time.Time, downAfter time.Duration) time.Duration {
	switch {
	case !downSince.IsZero():
		return at.Sub(downSince) + downAfter
	case !failoverStart.IsZero():
		return at.Sub(failoverStart)
	default:
		return 0
	}
}

func (o *SentinelObserver) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return 2 * time.Second
}

func (o *SentinelObserver) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// Watching lists the Sentinels of the store whose subscriptions are live, sorted; for
// tests and diagnostics.
func (o *SentinelObserver) Watching(cluster types.NamespacedName) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.stores[cluster]
	if !ok {
		return nil
	}
	var out []string
	for _, addr := range st.watched {
		if s := o.subs[addr]; s != nil && s.live {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}
