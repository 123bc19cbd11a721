package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// Session is what the app keeps per user: an id and a counter that every
// GET /session bumps, so a client can tell a lost or rolled-back session from
// a live one.
type Session struct {
	ID      string `json:"id"`
	Counter int64  `json:"counter"`
}

var (
	// ErrNotFound: no such session (never created, or expired).
	ErrNotFound = errors.New("session not found")
	// ErrNotReplicated: the write reached the primary but fewer replicas than
	// required acknowledged it in time, so it is not reported as durable.
	ErrNotReplicated = errors.New("session write not acknowledged by enough replicas")
)

// Store is one session backend. Implementations are safe for concurrent use.
type Store interface {
	// Create stores a new session with counter 0 and the configured TTL.
	Create(ctx context.Context, id string) (Session, error)
	// Incr bumps the counter of an existing session, refreshes its TTL and
	// returns the new value; ErrNotFound when the session does not exist.
	Incr(ctx context.Context, id string) (Session, error)
	// Get reads a session without changing it; ErrNotFound when absent.
	Get(ctx context.Context, id string) (Session, error)
	// Ready reports whether the backend can serve requests now.
	Ready(ctx context.Context) error
	// Close releases the backend (leaves the cluster, closes pools).
	Close() error
}

// newSessionID returns 128 random bits from crypto/rand, hex encoded.
func newSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ panics itself).
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// validSessionID accepts exactly the ids newSessionID makes, so that junk from
// a client never becomes a key in the store.
func validSessionID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
