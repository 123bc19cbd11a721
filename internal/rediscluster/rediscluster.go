// Package rediscluster runs a Redis Cluster toward the topology the operator wants:
// it meets servers, assigns slots, places replicas, forgets servers that are gone, and
// moves slots live when the shard count changes. Pure Go on go-redis; no Kubernetes.
//
// How a caller drives it (the controller, and test/datapath the same way):
//
//   - Spec.Nodes lists every ordinal of the StatefulSet that exists, ready or not, in
//     order; their names must resolve (a headless Service with publishNotReadyAddresses),
//     since CLUSTER MEET takes an IP.
//   - Call Reconcile again about every second while State.Busy, else on the usual
//     requeue. One call moves at most MigrateBudget (3 s) of slots plus one batch, so a
//     context of 30 s is ample. State.Step says what it did or waits for.
//   - While any of the ordinals it needs does not answer, it changes nothing (Busy, Step
//     "wait for <addr>"): a server that is down is Redis Cluster's failover's business.
//   - Fewer Nodes than Shards*PerShard: it waits; grow the StatefulSet first. To shrink,
//     keep the StatefulSet at max(Shards*PerShard, State.NodesNeeded) and lower it once
//     NodesNeeded has dropped (the drained servers have been reset and forgotten).
//   - The operator's user needs every command (CLUSTER, MIGRATE with AUTH2 towards the
//     other servers, INFO); its password never appears in an error.
package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Auth is the ACL user the operator logs in as ("" username = default user).
type Auth struct{ Username, Password string }

// Spec is the topology the operator wants.
type Spec struct {
	// Nodes are the addresses (host:port) of every server that exists now, in ordinal order
	// (pod ordinal k is Nodes[k]). In a pod this is the stable DNS name the server announces
	// (cluster-announce-hostname); in tests 127.0.0.1:port.
	Nodes []string
	// Shards is the wanted number of shards (>= 3).
	Shards int
	// PerShard is the number of servers per shard (store.replicas): ordinal k belongs to
	// shard k / PerShard while it is being placed; after a failover any member may be primary.
	PerShard int
}

// State is what the cluster reports.
type State struct {
	Shards       []ShardState // by shard index
	SlotsCovered int          // 0..16384
	OK           bool         // every node that answered says cluster_state:ok
	// NodesNeeded is how many ordinals (0..NodesNeeded-1) must still exist: while slots are
	// being drained from shards being removed it stays at the old count; the controller keeps
	// the StatefulSet at max(Shards*PerShard, NodesNeeded) and shrinks it only after this drops.
	NodesNeeded int
	// Busy says a step is under way (meeting, migrating, forgetting); the controller requeues soon.
	Busy bool
	// Step names what this call did or waits for ("" when the cluster is as wanted): for
	// logs and events, never parsed.
	Step string
	// Unreachable lists the Spec nodes that did not answer.
	Unreachable []string
}

// ShardState is one shard: a primary and its replicas.
type ShardState struct {
	Index    int
	Primary  string // address of the current primary ("" when none)
	Replicas []string
	Slots    int
}

// MigrateBudget bounds the slot migration one Reconcile call does; the rest waits for the
// next call (Busy=true).
var MigrateBudget = 3 * time.Second

// MigrateBatch is how many slots move together (their keys in MIGRATE batches of
// MigrateKeys keys each).
var (
	MigrateBatch = 128
	MigrateKeys  = 100
)

// Reconcile moves the cluster toward spec in safe, idempotent steps and returns what it saw
// after them: meet nodes that are not in the cluster, assign slots when none are assigned,
// make each shard's non-primary members replicas of its primary, rejoin a node that came
// back with a new IP (hostnames make that automatic; check), forget node IDs that are gone
// for good (their ordinal >= len(Nodes) and no slots), migrate slots live when Shards
// changes (MIGRATE keys in batches; clients see MOVED/ASK; no key is lost), and remove a
// drained shard's nodes (CLUSTER RESET on them, CLUSTER FORGET everywhere).
// It may be called repeatedly while it works (every few seconds, by one caller at a time per
// store) and must be safe to call on a healthy cluster (no writes, no changes).
func Reconcile(ctx context.Context, spec Spec, auth Auth) (st State, err error) {
	defer func() {
		// A reply this code did not expect must not take the operator down.
		if p := recover(); p != nil {
			st, err = State{Busy: true}, fmt.Errorf("redis cluster: unexpected state: %v", p)
		}
	}()
	if err := spec.validate(); err != nil {
		return State{}, err
	}
	v, err := gather(ctx, spec.Nodes, auth)
	if err != nil {
		return State{}, err
	}
	defer func() { v.close() }()
	r := &reconciler{spec: spec, auth: auth, v: v}
	step, err := r.run(ctx)
	if err != nil {
		st = v.state(spec.PerShard)
		st.Busy, st.Step = true, step
		return st, fmt.Errorf("redis cluster: %s: %w", step, err)
	}
	if step != "" {
		// Something changed: report what the cluster says now, not what it said before.
		v.close()
		if v, err = gather(ctx, spec.Nodes, auth); err != nil {
			return State{}, err
		}
		r.v = v
	}
	st = v.state(spec.PerShard)
	st.NodesNeeded = r.nodesNeeded(v)
	if step == "" {
		step = r.pending(v)
	}
	st.Step = step
	st.Busy = step != ""
	return st, nil
}

// Observe reads State without changing anything.
func Observe(ctx context.Context, nodes []string, auth Auth) (st State, err error) {
	defer func() {
		if p := recover(); p != nil {
			st, err = State{Busy: true}, fmt.Errorf("redis cluster: unexpected state: %v", p)
		}
	}()
	if len(nodes) == 0 {
		return State{}, errors.New("redis cluster: no nodes to observe")
	}
	v, err := gather(ctx, nodes, auth)
	if err != nil {
		return State{}, err
	}
	defer v.close()
	st = v.state(0)
	st.NodesNeeded = v.membersNeeded()
	if p := v.openMigrations(); len(p) > 0 || st.SlotsCovered != Slots || len(st.Unreachable) > 0 {
		st.Busy = true
	}
	return st, nil
}

func (s Spec) validate() error {
	switch {
	case s.Shards < 1:
		return fmt.Errorf("redis cluster: shards %d: want at least 1", s.Shards)
	case s.PerShard < 1:
		return fmt.Errorf("redis cluster: perShard %d: want at least 1", s.PerShard)
	case s.Shards > Slots:
		return fmt.Errorf("redis cluster: shards %d: at most %d", s.Shards, Slots)
	case len(s.Nodes) == 0:
		return errors.New("redis cluster: no nodes")
	}
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		if seen[n] {
			return fmt.Errorf("redis cluster: node %s listed twice", n)
		}
		seen[n] = true
	}
	return nil
}
