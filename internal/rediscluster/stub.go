// Package rediscluster: STUB for branch s2-11b only, so the controller compiles against the
// contract (/work/notes/cluster-contract.md). The real engine comes from s2-11a; the lead
// deletes this file when merging.
package rediscluster

import (
	"context"
	"errors"
)

// Auth is the ACL user the operator logs in as ("" username = default user).
type Auth struct{ Username, Password string }

// Spec is the topology the operator wants.
type Spec struct {
	Nodes    []string
	Shards   int
	PerShard int
}

// State is what the cluster reports.
type State struct {
	Shards       []ShardState
	SlotsCovered int
	OK           bool
	NodesNeeded  int
	Busy         bool
}

// ShardState is one shard.
type ShardState struct {
	Index    int
	Primary  string
	Replicas []string
	Slots    int
}

var errNotBuilt = errors.New("rediscluster: not built (stub)")

// Reconcile is a stub.
func Reconcile(ctx context.Context, spec Spec, auth Auth) (State, error) {
	return State{}, errNotBuilt
}

// Observe is a stub.
func Observe(ctx context.Context, nodes []string, auth Auth) (State, error) {
	return State{}, errNotBuilt
}
