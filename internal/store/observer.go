// Package store observes a running session store through its Sentinels: who the primary
// is, and when that changed. The controller depends only on the Observer interface; the
// Sentinel implementation is exercised against real redis-sentinel processes by the
// data-path harness, and envtest (which runs no pods) uses a fake.
package store

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Target is one session store to observe.
type Target struct {
	// Cluster is the SessionCluster that owns the store.
	Cluster types.NamespacedName
	// MasterName is the name the Sentinels know the primary by.
	MasterName string
	// Sentinels are host:port addresses of every Sentinel.
	Sentinels []string
	// Username and Password authenticate to the Sentinels and the primary (the operator's
	// ACL user; empty Username is the default user).
	Username string
	Password string
}

// Observation is what the Sentinels said.
type Observation struct {
	// PrimaryHost is the primary's stable host name, empty when no Sentinel names one.
	PrimaryHost string
	// SentinelsReachable counts Sentinels that answered.
	SentinelsReachable int
	// LastSwitch is the last primary change a Sentinel announced, when one was seen.
	LastSwitch *Switch
	// Keys is the primary's DBSIZE, when it could be sampled (-1 otherwise).
	Keys int64
	// Health is whether the Sentinels agree on PrimaryHost and see it able to take writes.
	Health Health
}

// Switch is one primary change announced by Sentinel (+switch-master).
type Switch struct {
	From, To string
	// At is when the switch was announced.
	At time.Time
	// Duration runs from when the old primary was first seen down to the switch, plus the
	// down-after wait that preceded it; zero when the start was not seen.
	Duration time.Duration
}

// Observer asks a store's Sentinels about it.
type Observer interface {
	Observe(ctx context.Context, t Target) (Observation, error)
}

// Tracker is an Observer that keeps stores under observation in the background, so a
// reconcile reads the latest Observation instead of asking the Sentinels itself.
type Tracker interface {
	Observer
	// Latest keeps t tracked and returns its latest Observation and the error of that
	// assessment without asking anyone; ok is false until the first assessment is done
	// (the tracker then wakes the SessionCluster).
	Latest(t Target) (obs Observation, err error, ok bool)
}
