package main

import (
	"context"
	"sync"
	"time"
)

// memoryStore keeps sessions in this process only: what a Sticky deployment
// without a store really gets. A session dies with its pod.
type memoryStore struct {
	ttl time.Duration
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]memoryEntry

	stop chan struct{}
	once sync.Once
}

type memoryEntry struct {
	counter int64
	expires time.Time
}

func newMemoryStore(ttl time.Duration) *memoryStore {
	s := &memoryStore{ttl: ttl, now: time.Now, sessions: map[string]memoryEntry{}, stop: make(chan struct{})}
	go s.janitor(time.Minute)
	return s
}

func (s *memoryStore) Create(_ context.Context, id string) (Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = memoryEntry{counter: 0, expires: s.now().Add(s.ttl)}
	return Session{ID: id}, nil
}

func (s *memoryStore) Incr(_ context.Context, id string) (Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e, ok := s.sessions[id]
	if !ok || !now.Before(e.expires) {
		delete(s.sessions, id)
		return Session{}, ErrNotFound
	}
	e.counter++
	e.expires = now.Add(s.ttl)
	s.sessions[id] = e
	return Session{ID: id, Counter: e.counter}, nil
}

func (s *memoryStore) Get(_ context.Context, id string) (Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sessions[id]
	if !ok || !s.now().Before(e.expires) {
		return Session{}, ErrNotFound
	}
	return Session{ID: id, Counter: e.counter}, nil
}

func (s *memoryStore) Ready(context.Context) error { return nil }

func (s *memoryStore) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

func (s *memoryStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// janitor drops expired sessions so memory does not grow with abandoned ones.
func (s *memoryStore) janitor(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

func (s *memoryStore) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for id, e := range s.sessions {
		if !now.Before(e.expires) {
			delete(s.sessions, id)
		}
	}
}
