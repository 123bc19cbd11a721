package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultClientName names every connection the observer opens (CLIENT SETNAME), so that
// CLIENT LIST on a Sentinel or a server tells them apart from the apps'.
const DefaultClientName = "session-operator"

// The Sentinel event channels the observer follows.
const (
	chSwitchMaster = "+switch-master"
	chSdown        = "+sdown"
	chSdownClear   = "-sdown"
	chOdown        = "+odown"
	chTryFailover  = "+try-failover"
)

// watchIdle is how long a subscription may stay silent before it is pinged.
const watchIdle = 15 * time.Second

// staleEpisode bounds how long before a switch its +sdown or +try-failover may be.
const staleEpisode = 10 * time.Minute

// SentinelObserver asks a store's Sentinels over the network, and follows what they
// announce.
//
// Polling: Observe asks every Sentinel of the store for the primary (at once, each
// bounded by Timeout) and reports the answer most of them give; a tie goes to the
// primary reported last time, else to the smallest address, so the same answers always
// give the same primary. It also samples the primary's DBSIZE.
//
// Events: the first Observe of a store subscribes to each of its Sentinels (+sdown,
// -sdown, +odown, +try-failover, +switch-master), each subscription re-established with
// backoff when it fails. Every Sentinel, not one: the leader of a failover is the only
// one to announce +try-failover, and the first +sdown of any of them is the best
// estimate of when the primary went away. The first +switch-master becomes
// Observation.LastSwitch and calls Notify, so a controller can reconcile at once instead
// of at its next resync; the other Sentinels' announcements of the same switch are
// ignored. A switch is timed as described at switchDuration.
//
// At most Concurrency stores are asked at once, so a thousand SessionClusters cannot open
// a thousand connections in one burst. Each store holds, until Forget or Close, one
// connection per Sentinel for questions, one per Sentinel for its subscription (each
// with one goroutine) and one to its primary.
type SentinelObserver struct {
	// Timeout bounds one question to one server.
	Timeout time.Duration
	// Notify, when set, is called with the store's SessionCluster when its Sentinels
	// announce a new primary (+switch-master), once per switch, and at every HealthEvents
	// announcement about the store's servers, so its Health is assessed again at once. It runs on a watcher
	// goroutine and must not block (a non-blocking send on a buffered channel, a
	// workqueue Add).
	Notify func(types.NamespacedName)
	// ClientName is sent as CLIENT SETNAME on every connection; DefaultClientName if empty.
	ClientName string

	sem chan struct{}
	now func() time.Time

	mu     sync.Mutex
	stores map[types.NamespacedName]*storeState
	closed bool
}

// NewSentinelObserver returns an observer asking at most concurrency stores at once.
func NewSentinelObserver(concurrency int, timeout time.Duration) *SentinelObserver {
	return &SentinelObserver{
		Timeout: timeout,
		sem:     make(chan struct{}, max(1, concurrency)),
		now:     time.Now,
		stores:  map[types.NamespacedName]*storeState{},
	}
}

// storeState is what the observer keeps for one store.
type storeState struct {
	key    types.NamespacedName
	master string
	fp     string // fingerprint of the target: a change starts over

	sentinels []string
	clients   map[string]*redis.SentinelClient

	primaryAddr   string
	primaryClient *redis.Client

	cancel context.CancelFunc
	done   chan struct{} // closed when every watcher has ended

	// Guarded by mu: written by the watchers, read by Observe.
	mu            sync.Mutex
	subs          map[string]*redis.PubSub // open subscriptions by Sentinel
	watching      map[string]bool          // Sentinels subscribed to
	downAfter     time.Duration
	downSince     map[string]time.Time // primary host -> first +sdown (or +odown) seen
	failoverStart map[string]time.Time // primary host -> first +try-failover seen
	last          *Switch
	lastInferred  bool
	lastPrimary   string
}

func fingerprint(t Target) string {
	return t.MasterName + "\x00" + strings.Join(t.Sentinels, ",") + "\x00" + t.Username + "\x00" + t.Password
}

// Observe asks every Sentinel of t for the primary; the answer most Sentinels give wins.
func (o *SentinelObserver) Observe(ctx context.Context, t Target) (Observation, error) {
	select {
	case o.sem <- struct{}{}:
		defer func() { <-o.sem }()
	case <-ctx.Done():
		return Observation{Keys: -1}, ctx.Err()
	}
	st, err := o.state(t)
	if err != nil {
		return Observation{Keys: -1}, err
	}
	obs := Observation{Keys: -1}

	type answer struct {
		addr string // primary host:port, empty when the Sentinel knows none
		err  error
		// SENTINEL MASTER and SENTINEL REPLICAS (see assessHealth); master nil when not answered.
		master   map[string]string
		replicas []map[string]string
	}
	answers := make([]answer, len(st.sentinels))
	var wg sync.WaitGroup
	for i, addr := range st.sentinels {
		wg.Add(1)
		go func(i int, c *redis.SentinelClient) {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, o.timeout())
			defer cancel()
			res, err := c.GetMasterAddrByName(qctx, t.MasterName).Result()
			switch {
			case errors.Is(err, redis.Nil):
				answers[i] = answer{}
			case err != nil:
				answers[i] = answer{err: err}
			case len(res) == 2:
				answers[i] = answer{addr: net.JoinHostPort(res[0], res[1])}
			}
			if answers[i].err == nil {
				if m, err := c.Master(qctx, t.MasterName).Result(); err == nil {
					answers[i].master = m
					answers[i].replicas, _ = c.Replicas(qctx, t.MasterName).Result()
				}
			}
		}(i, st.clients[addr])
	}
	wg.Wait()

	votes := map[string]int{}
	var errs []error
	for i, a := range answers {
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.sentinels[i], a.err))
			continue
		}
		obs.SentinelsReachable++
		if a.addr != "" {
			votes[a.addr]++
		}
	}

	st.mu.Lock()
	prev := st.lastPrimary
	primaryAddr := pickPrimary(votes, prev)
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
		host, _, _ := net.SplitHostPort(primaryAddr)
		obs.PrimaryHost = host
	}
	var masters []map[string]string
	var replicas [][]map[string]string
	for _, a := range answers {
		if a.master != nil {
			masters, replicas = append(masters, a.master), append(replicas, a.replicas)
		}
	}
	obs.Health = assessHealth(obs.PrimaryHost, masters, replicas)
	// A primary the Sentinels see down (frozen, gone) would only hold this answer for the
	// whole Timeout.
	if primaryAddr != "" && obs.Health.PrimaryDown == "" {
		obs.Keys = o.dbsize(ctx, st, primaryAddr, t.Username, t.Password)
	}

	st.mu.Lock()
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
	st.mu.Unlock()

	if obs.SentinelsReachable == 0 && len(errs) > 0 {
		return obs, errors.Join(errs...)
	}
	return obs, nil
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

// dbsize samples the primary's key count; -1 when it cannot.
func (o *SentinelObserver) dbsize(ctx context.Context, st *storeState, addr, username, password string) int64 {
	o.mu.Lock()
	if o.stores[st.key] != st { // forgotten meanwhile: open nothing new
		o.mu.Unlock()
		return -1
	}
	if st.primaryAddr != addr || st.primaryClient == nil {
		if st.primaryClient != nil {
			_ = st.primaryClient.Close()
		}
		st.primaryAddr = addr
		st.primaryClient = redis.NewClient(o.options(addr, username, password))
	}
	c := st.primaryClient
	o.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	n, err := c.DBSize(qctx).Result()
	if err != nil {
		return -1
	}
	return n
}

func (o *SentinelObserver) options(addr, username, password string) *redis.Options {
	name := o.ClientName
	if name == "" {
		name = DefaultClientName
	}
	return &redis.Options{
		Addr:        addr,
		Username:    username,
		Password:    password,
		ClientName:  name,
		Protocol:    2,
		DialTimeout: o.timeout(),
		// One dial per question: Observe is bounded by Timeout and asked again later.
		DialerRetries: 1,
		ReadTimeout:   o.timeout(),
		WriteTimeout:  o.timeout(),
		PoolSize:      1,
		MaxRetries:    -1,
	}
}

// state returns the store's state, made anew (and its watcher started) on first sight
// or when the target changed.
func (o *SentinelObserver) state(t Target) (*storeState, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("sentinel observer closed")
	}
	fp := fingerprint(t)
	if st, ok := o.stores[t.Cluster]; ok {
		if st.fp == fp {
			return st, nil
		}
		o.dropLocked(st)
	}
	st := &storeState{
		key: t.Cluster, master: t.MasterName, fp: fp,
		sentinels:     append([]string(nil), t.Sentinels...),
		clients:       map[string]*redis.SentinelClient{},
		downSince:     map[string]time.Time{},
		failoverStart: map[string]time.Time{},
		subs:          map[string]*redis.PubSub{},
		watching:      map[string]bool{},
		done:          make(chan struct{}),
	}
	for _, addr := range st.sentinels {
		if _, ok := st.clients[addr]; !ok {
			st.clients[addr] = redis.NewSentinelClient(o.options(addr, t.Username, t.Password))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	o.stores[t.Cluster] = st
	var wg sync.WaitGroup
	for addr := range st.clients {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			o.watch(ctx, st, addr)
		}(addr)
	}
	go func() {
		wg.Wait()
		close(st.done)
	}()
	return st, nil
}

// Forget drops the clients and the subscription of a deleted SessionCluster's store and
// waits for its watcher to end.
func (o *SentinelObserver) Forget(cluster types.NamespacedName) {
	o.mu.Lock()
	st, ok := o.stores[cluster]
	if ok {
		o.dropLocked(st)
	}
	o.mu.Unlock()
	if ok {
		<-st.done
	}
}

// dropLocked stops a store's watcher and closes its connections; o.mu is held.
func (o *SentinelObserver) dropLocked(st *storeState) {
	delete(o.stores, st.key)
	st.cancel()
	st.mu.Lock()
	for _, ps := range st.subs {
		_ = ps.Close() // wakes its watcher from its read
	}
	st.mu.Unlock()
	for _, c := range st.clients {
		_ = c.Close()
	}
	if st.primaryClient != nil {
		_ = st.primaryClient.Close()
		st.primaryClient = nil
	}
}

// Close releases every connection and ends every watcher.
func (o *SentinelObserver) Close() error {
	o.mu.Lock()
	o.closed = true
	var done []chan struct{}
	for _, st := range o.stores {
		o.dropLocked(st)
		done = append(done, st.done)
	}
	o.mu.Unlock()
	for _, d := range done {
		<-d
	}
	return nil
}

// watch keeps a subscription open on one Sentinel of the store, re-established with
// backoff when it fails, until the store is forgotten.
func (o *SentinelObserver) watch(ctx context.Context, st *storeState, addr string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if subscribed, _ := o.watchOne(ctx, st, addr); subscribed {
			backoff = 100 * time.Millisecond
		} else {
			backoff = min(2*backoff, 5*time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// watchOne follows one Sentinel until its connection fails or ctx ends.
func (o *SentinelObserver) watchOne(ctx context.Context, st *storeState, addr string) (subscribed bool, err error) {
	c := st.clients[addr]
	ps := c.Subscribe(ctx)
	st.mu.Lock()
	if ctx.Err() != nil { // dropped meanwhile: dropLocked did not see this subscription
		st.mu.Unlock()
		_ = ps.Close()
		return false, ctx.Err()
	}
	st.subs[addr] = ps
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.subs, addr)
		delete(st.watching, addr)
		st.mu.Unlock()
		_ = ps.Close()
	}()
	sctx, cancel := context.WithTimeout(ctx, o.timeout())
	err = ps.Subscribe(sctx, watchedChannels()...)
	cancel()
	if err != nil {
		return false, err
	}
	// Wait for the confirmation, so that a dead Sentinel counts as a failure here.
	if _, err := ps.ReceiveTimeout(ctx, o.timeout()); err != nil {
		return false, err
	}
	st.mu.Lock()
	st.watching[addr] = true
	st.mu.Unlock()
	// down-after is part of a switch's duration: learn it from the Sentinels themselves.
	qctx, qcancel := context.WithTimeout(ctx, o.timeout())
	if m, err := c.Master(qctx, st.master).Result(); err == nil {
		if ms, err := strconv.ParseInt(m["down-after-milliseconds"], 10, 64); err == nil {
			st.mu.Lock()
			st.downAfter = time.Duration(ms) * time.Millisecond
			st.mu.Unlock()
		}
	}
	qcancel()
	// A silent subscription is pinged; one that does not answer the ping in Timeout is
	// dead (a peer that vanished without a reset would otherwise hold it for minutes).
	pinged := false
	for ctx.Err() == nil {
		wait := watchIdle
		if pinged {
			wait = o.timeout()
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && !pinged {
				pctx, pcancel := context.WithTimeout(ctx, o.timeout())
				err = ps.Ping(pctx)
				pcancel()
				if err == nil {
					pinged = true
					continue
				}
			}
			return true, err
		}
		pinged = false
		if m, ok := msg.(*redis.Message); ok {
			o.handle(st, m.Channel, m.Payload)
		}
	}
	return true, ctx.Err()
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
		st.lastPrimary = to
		delete(st.downSince, from)
		delete(st.failoverStart, from)
		st.mu.Unlock()
		if o.Notify != nil {
			o.Notify(st.key)
		}
	case chSdown, chOdown, chTryFailover, chSdownClear:
		o.healthEvent(st, channel, f)
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
	default:
		o.healthEvent(st, channel, f)
	}
}

// healthEvent wakes the store's reconcile when a Sentinel announces something that changes
// its Health (HealthEvents) about this store's primary or one of its servers:
// "<type> <name> <host> <port> [@ <master name> <host> <port>]".
func (o *SentinelObserver) healthEvent(st *storeState, channel string, f []string) {
	if o.Notify == nil || !slices.Contains(HealthEvents, channel) || channel == chSwitchMaster {
		return
	}
	ours := len(f) >= 2 && f[0] == "master" && f[1] == st.master
	if i := slices.Index(f, "@"); i >= 0 && i+1 < len(f) && f[i+1] == st.master {
		ours = true
	}
	if ours {
		o.Notify(st.key)
	}
}

// watchedChannels are the event channels the observer times failovers by, and HealthEvents.
func watchedChannels() []string {
	chs := []string{chSwitchMaster, chSdown, chSdownClear, chOdown, chTryFailover}
	for _, c := range HealthEvents {
		if !slices.Contains(chs, c) {
			chs = append(chs, c)
		}
	}
	return chs
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

// Watching lists the Sentinels the store's watchers are subscribed to, sorted; for tests
// and diagnostics.
func (o *SentinelObserver) Watching(cluster types.NamespacedName) []string {
	o.mu.Lock()
	st, ok := o.stores[cluster]
	o.mu.Unlock()
	if !ok {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.watching))
	for a := range st.watching {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
