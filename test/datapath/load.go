//go:build datapath

package datapath

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// writeEvent is one request's outcome, kept for the record and for the gap measurement.
type writeEvent struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Client  int       `json:"client"`
	Op      string    `json:"op"` // login | bump | read
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Status  int       `json:"status"`
	OK      bool      `json:"ok"`
	Counter int64     `json:"counter"`
	Err     string    `json:"err,omitempty"`
}

// session is one user's session and every counter value the app acknowledged for it.
type session struct {
	id    string
	url   string // where it was created
	acked []ackedValue
	lost  bool // the whole session vanished (401)
}

type ackedValue struct {
	v    int64
	lost bool
}

// ledger counts acknowledged writes and finds lost ones. A write is acknowledged when the
// app answers 200: the login makes counter 0, a bump returns the new counter. Every later
// observation of the session shows what it held (a bump returning c: c-1 before it; a
// read: the value), and any acknowledged value above that is lost, however long ago it
// was acknowledged. One writer owns each session, so its writes are sequential.
type ledger struct {
	mu       sync.Mutex
	sessions map[string]*session
	order    []string
	acked    int
	lost     int
	lostIDs  map[string]int
	events   []writeEvent
}

func newLedger() *ledger {
	return &ledger{sessions: map[string]*session{}, lostIDs: map[string]int{}}
}

func (l *ledger) record(e writeEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	s := l.sessions[e.ID]
	if e.Op == "login" {
		if !e.OK {
			return
		}
		s = &session{id: e.ID, url: e.URL, acked: []ackedValue{{v: 0}}}
		l.sessions[e.ID] = s
		l.order = append(l.order, e.ID)
		l.acked++
		return
	}
	if s == nil {
		return
	}
	switch {
	case e.OK && e.Op == "bump":
		l.observeLocked(s, e.Counter-1)
		s.acked = append(s.acked, ackedValue{v: e.Counter})
		l.acked++
	case e.OK && e.Op == "read":
		l.observeLocked(s, e.Counter)
	case e.Status == 401:
		l.observeLocked(s, -1)
		s.lost = true
	}
}

// observeLocked: the session held base; every acknowledged value above it is lost.
func (l *ledger) observeLocked(s *session, base int64) {
	for i := range s.acked {
		if a := &s.acked[i]; a.v > base && !a.lost {
			a.lost = true
			l.lost++
			l.lostIDs[s.id]++
		}
	}
}

func (l *ledger) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

func (l *ledger) counts() (acked, lost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.lost
}

// sessionsLost counts sessions that vanished or lost an acknowledged value.
func (l *ledger) sessionsLost() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.sessions {
		if s.lost || l.lostIDs[s.id] > 0 {
			n++
		}
	}
	return n
}

func (l *ledger) writeEvents(path string) error {
	l.mu.Lock()
	events := append([]writeEvent(nil), l.events...)
	l.mu.Unlock()
	sort.Slice(events, func(i, j int) bool { return events[i].Start.Before(events[j].Start) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// firstOKAfter is the end of the first successful write that started at or after t.
func (l *ledger) firstOKAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best time.Time
	for _, e := range l.events {
		if e.Op == "bump" && e.OK && !e.Start.Before(t) && (best.IsZero() || e.End.Before(best)) {
			best = e.End
		}
	}
	return best, !best.IsZero()
}

// lastOKBefore is the end of the last successful write that ended before t.
func (l *ledger) lastOKBefore(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best time.Time
	for _, e := range l.events {
		if e.Op == "bump" && e.OK && e.End.Before(t) && e.End.After(best) {
			best = e.End
		}
	}
	return best
}

// longestStall is the longest time between two successful writes (by completion)
// around [from, to]: from the last success before from to the first after to.
func (l *ledger) longestStall(from, to time.Time) float64 {
	l.mu.Lock()
	var ends []time.Time
	for _, e := range l.events {
		if e.Op == "bump" && e.OK {
			ends = append(ends, e.End)
		}
	}
	l.mu.Unlock()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	worst := 0.0
	for i := 1; i < len(ends); i++ {
		if ends[i].Before(from) || ends[i-1].After(to) {
			continue
		}
		worst = max(worst, ends[i].Sub(ends[i-1]).Seconds())
	}
	return worst
}

// refusedSpan is how long writes were being refused in [from, to): from the start of the
// first failed write to the end of the last one; 0 when none failed.
func (l *ledger) refusedSpan(from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first, last time.Time
	for _, e := range l.events {
		if e.Op != "bump" || e.OK || e.Start.Before(from) || !e.Start.Before(to) {
			continue
		}
		if first.IsZero() || e.Start.Before(first) {
			first = e.Start
		}
		if e.End.After(last) {
			last = e.End
		}
	}
	if first.IsZero() {
		return 0
	}
	return last.Sub(first).Seconds()
}

// describeFailed describes up to n failed writes that started in [from, to), with their
// start and end in seconds after from.
func (l *ledger) describeFailed(from, to time.Time, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Op == "bump" && !e.OK && !e.Start.Before(from) && e.Start.Before(to) && len(out) < n {
			out = append(out, fmt.Sprintf("%.2fs-%.2fs %s", e.Start.Sub(from).Seconds(), e.End.Sub(from).Seconds(), e.Err))
		}
	}
	return out
}

// failedBetween counts failed writes that started in [from, to).
func (l *ledger) failedBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Op == "bump" && !e.OK && !e.Start.Before(from) && e.Start.Before(to) {
			n++
		}
	}
	return n
}

func do(cl *appClient, ctx context.Context, op, base, id string, k int) writeEvent {
	e := writeEvent{Start: time.Now(), Client: k, Op: op, ID: id, URL: base}
	var r sessionReply
	var err error
	switch op {
	case "login":
		r, e.Status, err = cl.login(ctx, base)
		e.ID = r.ID
	case "bump":
		r, e.Status, err = cl.bump(ctx, base, id)
	case "read":
		r, e.Status, err = cl.peek(ctx, base, id)
	}
	e.End = time.Now()
	if err != nil {
		e.Err = err.Error()
	} else {
		e.OK, e.Counter = true, r.Counter
	}
	return e
}

// createSessions logs n sessions in, round-robin over urls, and bumps each once.
func createSessions(ctx context.Context, l *ledger, urls []string, n, concurrency int) error {
	cl := newClient(concurrency, 10*time.Second)
	var wg sync.WaitGroup
	errc := make(chan error, concurrency)
	next := make(chan int)
	for k := 0; k < concurrency; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := range next {
				base := urls[i%len(urls)]
				e := do(cl, ctx, "login", base, "", k)
				l.record(e)
				if !e.OK {
					errc <- fmt.Errorf("login %d on %s: %s", i, base, e.Err)
					return
				}
				b := do(cl, ctx, "bump", base, e.ID, k)
				l.record(b)
				if !b.OK {
					errc <- fmt.Errorf("bump %d on %s: %s", i, base, b.Err)
					return
				}
			}
		}(k)
	}
	var err error
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case err = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// readBack reads every session through urls (retrying transport errors and 5xx), and
// records what it saw in the ledger. It returns how many sessions could not be read.
func readBack(ctx context.Context, l *ledger, ids []string, urls []string, concurrency int) (unverified int, err error) {
	cl := newClient(concurrency, 10*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := make(chan int)
	for k := 0; k < concurrency; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			for i := range next {
				var e writeEvent
				for try := 0; try < 5; try++ {
					e = do(cl, ctx, "read", urls[(i+try)%len(urls)], ids[i], k)
					if e.OK || e.Status == 401 {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				l.record(e)
				if !e.OK && e.Status != 401 {
					mu.Lock()
					unverified++
					if err == nil {
						err = errors.New(e.Err)
					}
					mu.Unlock()
				}
			}
		}(k)
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return unverified, err
}

// writers send continuous bumps from several clients, each owning a disjoint share of
// the sessions, rotating over the app instances, until stopped.
type writers struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startWriters(l *ledger, ids []string, urls []string, clients int, pause time.Duration) *writers {
	w := &writers{stop: make(chan struct{})}
	cl := newClient(clients, 5*time.Second)
	for k := 0; k < clients; k++ {
		var mine []string
		for i := k; i < len(ids); i += clients {
			mine = append(mine, ids[i])
		}
		w.wg.Add(1)
		go func(k int, mine []string) {
			defer w.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-w.stop:
					return
				default:
				}
				base := urls[(n+k)%len(urls)]
				l.record(do(cl, context.Background(), "bump", base, mine[n%len(mine)], k))
				if pause > 0 {
					select {
					case <-w.stop:
						return
					case <-time.After(pause):
					}
				}
			}
		}(k, mine)
	}
	return w
}

func (w *writers) halt() {
	close(w.stop)
	w.wg.Wait()
}
