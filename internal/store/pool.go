package store

import (
	"container/heap"
	"container/list"
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// connPool is the query connections the workers share: at most max open at once, idle
// ones kept by address (one each) and closed least recently used first when a new one
// needs the slot.
type connPool struct {
	max   int
	slots chan struct{}

	mu   sync.Mutex
	idle map[string]*list.Element // key -> element of lru
	lru  *list.List               // of *idleConn, front most recent
}

type idleConn struct {
	key string
	rc  *respConn
}

func newConnPool(max int) *connPool {
	return &connPool{max: max, slots: make(chan struct{}, max), idle: map[string]*list.Element{}, lru: list.New()}
}

// open is the number of connections held, idle or in use.
func (p *connPool) open() int { return len(p.slots) }

// get returns an idle connection for key, or dials one when a slot is free (closing the
// least recently used idle connection to free one, or waiting).
func (p *connPool) get(ctx context.Context, key string, dial func() (*respConn, error)) (rc *respConn, reused bool, err error) {
	p.mu.Lock()
	if e, ok := p.idle[key]; ok {
		delete(p.idle, key)
		p.lru.Remove(e)
		p.mu.Unlock()
		return e.Value.(*idleConn).rc, true, nil
	}
	p.mu.Unlock()
	for {
		select {
		case p.slots <- struct{}{}:
		default:
			if p.evictOldest() {
				continue
			}
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		break
	}
	rc, err = dial()
	if err != nil {
		<-p.slots
		return nil, false, err
	}
	return rc, false, nil
}

// evictOldest closes the least recently used idle connection; false when none is idle.
func (p *connPool) evictOldest() bool {
	p.mu.Lock()
	e := p.lru.Back()
	if e == nil {
		p.mu.Unlock()
		return false
	}
	ic := e.Value.(*idleConn)
	p.lru.Remove(e)
	delete(p.idle, ic.key)
	p.mu.Unlock()
	ic.rc.close()
	<-p.slots
	return true
}

// put returns a healthy connection to the pool.
func (p *connPool) put(key string, rc *respConn) {
	p.mu.Lock()
	if _, ok := p.idle[key]; ok {
		p.mu.Unlock()
		p.discard(rc)
		return
	}
	p.idle[key] = p.lru.PushFront(&idleConn{key: key, rc: rc})
	p.mu.Unlock()
}

// discard closes a connection taken from the pool.
func (p *connPool) discard(rc *respConn) {
	rc.close()
	<-p.slots
}

// closeIdle closes the idle connections whose key matches.
func (p *connPool) closeIdle(match func(key string) bool) {
	p.mu.Lock()
	var closing []*respConn
	for key, e := range p.idle {
		if match(key) {
			closing = append(closing, e.Value.(*idleConn).rc)
			p.lru.Remove(e)
			delete(p.idle, key)
		}
	}
	p.mu.Unlock()
	for _, rc := range closing {
		rc.close()
		<-p.slots
	}
}

// delayQueue hands store keys to the workers: each key at most once in the queue and
// never to two workers at once (a key added while it is being worked on comes back after
// done), each no sooner than asked.
type delayQueue struct {
	mu      sync.Mutex
	when    map[types.NamespacedName]time.Time // queued keys and when they are due
	h       keyHeap
	active  map[types.NamespacedName]bool
	again   map[types.NamespacedName]time.Time // added while active
	stopped bool
	wake    chan struct{}
}

func newDelayQueue() *delayQueue {
	q := &delayQueue{when: map[types.NamespacedName]time.Time{}, active: map[types.NamespacedName]bool{},
		again: map[types.NamespacedName]time.Time{}, wake: make(chan struct{}, 1)}
	return q
}

// addAfter queues key for d from now, or sooner when it was already queued sooner.
func (q *delayQueue) addAfter(key types.NamespacedName, d time.Duration) {
	at := time.Now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	if q.active[key] {
		if prev, ok := q.again[key]; !ok || at.Before(prev) {
			q.again[key] = at
		}
		return
	}
	q.pushLocked(key, at)
}

func (q *delayQueue) pushLocked(key types.NamespacedName, at time.Time) {
	if prev, ok := q.when[key]; ok && !at.Before(prev) {
		return
	}
	q.when[key] = at
	heap.Push(&q.h, keyAt{key: key, at: at})
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// get waits for the next due key; false when the queue is shut down or ctx ends.
func (q *delayQueue) get(ctx context.Context) (types.NamespacedName, bool) {
	for {
		q.mu.Lock()
		if q.stopped {
			q.mu.Unlock()
			return types.NamespacedName{}, false
		}
		var wait time.Duration = time.Hour
		for q.h.Len() > 0 {
			top := q.h[0]
			if at, ok := q.when[top.key]; !ok || !at.Equal(top.at) {
				heap.Pop(&q.h) // superseded by an earlier entry, or taken
				continue
			}
			if d := time.Until(top.at); d > 0 {
				wait = d
				break
			}
			heap.Pop(&q.h)
			delete(q.when, top.key)
			q.active[top.key] = true
			if q.h.Len() > 0 { // another worker may take the next one
				select {
				case q.wake <- struct{}{}:
				default:
				}
			}
			q.mu.Unlock()
			return top.key, true
		}
		q.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-q.wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return types.NamespacedName{}, false
		}
		t.Stop()
	}
}

// done ends the work on key; an add that came meanwhile is queued now.
func (q *delayQueue) done(key types.NamespacedName) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, key)
	if at, ok := q.again[key]; ok {
		delete(q.again, key)
		if !q.stopped {
			q.pushLocked(key, at)
		}
	}
}

func (q *delayQueue) shutdown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.stopped = true
		close(q.wake)
	}
}

type keyAt struct {
	key types.NamespacedName
	at  time.Time
}

type keyHeap []keyAt

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(keyAt)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
