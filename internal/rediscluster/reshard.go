package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Live slot migration, as Redis Cluster documents it: the destination IMPORTING, the
// source MIGRATING, the keys MIGRATEd in batches (clients meanwhile get ASK for keys
// that already moved, and MOVED once the slot has), then SETSLOT NODE on the destination,
// the source and every other primary. A slot left open by an interrupted call is finished
// first, so no key stays behind and no slot stays half-owned.

// target is how many slots shard s should hold.
func (r *reconciler) target(s int) int {
	if s >= r.spec.Shards {
		return 0
	}
	t := Slots / r.spec.Shards
	if s < Slots%r.spec.Shards {
		t++
	}
	return t
}

// stable: every wanted server knows the others, nobody is failing, every slot is held
// by one of ours. Slots move only then.
func (r *reconciler) stable() bool {
	if !r.gossipComplete() {
		return false
	}
	for _, m := range r.v.reachable() {
		for _, n := range m.nodes {
			if n.failing() || n.Flags["handshake"] {
				return false
			}
		}
	}
	owners := r.v.owners()
	if len(owners) != Slots {
		return false
	}
	for _, id := range owners {
		if _, ok := r.v.byID[id]; !ok {
			return false
		}
	}
	return true
}

// migrate moves slots from shards above their share (or being removed) to shards below
// it, a batch at a time, until MigrateBudget is spent.
func (r *reconciler) migrate(ctx context.Context) (bool, error) {
	if !r.stable() {
		return false, nil
	}
	start := time.Now()
	did := false
	for time.Since(start) < MigrateBudget {
		owners := r.v.owners()
		count := map[int]int{}
		held := map[int][]int{}
		for slot, id := range owners {
			s := r.shardOf(r.v.byID[id].ordinal)
			count[s]++
			held[s] = append(held[s], slot)
		}
		shards := max(r.spec.Shards, (len(r.v.members)+r.spec.PerShard-1)/r.spec.PerShard)
		donor, recv, surplus, deficit := -1, -1, 0, 0
		for s := 0; s < shards; s++ {
			if d := count[s] - r.target(s); d > surplus {
				donor, surplus = s, d
			}
			if d := r.target(s) - count[s]; d > deficit {
				recv, deficit = s, d
			}
		}
		if donor < 0 || recv < 0 {
			return did, nil
		}
		dstID := r.shardPrimary(recv)
		if dstID == "" || !r.shardPlaced(recv, dstID) || !r.replicasOnline(ctx, r.v.byID[dstID]) {
			return did, nil // the receiving shard is not ready yet
		}
		srcSlots := held[donor]
		sort.Ints(srcSlots)
		n := min(surplus, deficit, MigrateBatch)
		slots := srcSlots[len(srcSlots)-n:]
		srcID := owners[slots[0]]
		src, dst := r.v.byID[srcID], r.v.byID[dstID]
		if err := r.moveSlots(ctx, src, dst, slots, true); err != nil {
			return did, err
		}
		did = true
		// Record the new owner in every view, so the next batch plans from it.
		for _, m := range r.v.reachable() {
			moveOwnership(m.nodes, slots, srcID, dstID)
		}
	}
	return did, nil
}

// shardPlaced: every other member of shard s replicates its primary p.
func (r *reconciler) shardPlaced(s int, p string) bool {
	lo, hi := s*r.spec.PerShard, min((s+1)*r.spec.PerShard, len(r.v.members))
	for _, m := range r.v.members[lo:hi] {
		if m.id != p && m.self().MasterID != p {
			return false
		}
	}
	return true
}

// replicasOnline: the primary streams to PerShard-1 replicas that finished their sync,
// so clients' WAIT on the keys that move there is answered at once.
func (r *reconciler) replicasOnline(ctx context.Context, p *member) bool {
	info, err := p.client.Info(ctx, "replication").Result()
	if err != nil {
		return false
	}
	return strings.Count(info, "state=online") >= r.spec.PerShard-1
}

func moveOwnership(nodes map[string]*nodeInfo, slots []int, from, to string) {
	moving := map[int]bool{}
	for _, s := range slots {
		moving[s] = true
	}
	if f := nodes[from]; f != nil {
		var keep []slotRange
		for _, rg := range f.Slots {
			for s := rg.lo; s <= rg.hi; s++ {
				if !moving[s] {
					keep = append(keep, slotRange{s, s})
				}
			}
		}
		f.Slots = keep
	}
	if t := nodes[to]; t != nil {
		for _, s := range slots {
			t.Slots = append(t.Slots, slotRange{s, s})
		}
	}
}

// moveSlots migrates slots (all held by src) to dst. open: set IMPORTING/MIGRATING first
// (false when finishing slots already open).
func (r *reconciler) moveSlots(ctx context.Context, src, dst *member, slots []int, open bool) error {
	if open {
		if err := pipeAll(ctx, dst.client, slots, func(p redis.Pipeliner, s int) {
			p.Do(ctx, "cluster", "setslot", s, "importing", src.id)
		}); err != nil {
			return fmt.Errorf("SETSLOT IMPORTING on %s: %w", dst.addr, err)
		}
		if err := pipeAll(ctx, src.client, slots, func(p redis.Pipeliner, s int) {
			p.Do(ctx, "cluster", "setslot", s, "migrating", dst.id)
		}); err != nil {
			return fmt.Errorf("SETSLOT MIGRATING on %s: %w", src.addr, err)
		}
	}
	if err := r.moveKeys(ctx, src, dst, slots); err != nil {
		return err
	}
	return r.setOwner(ctx, src, dst, slots)
}

// moveKeys MIGRATEs every key of slots from src to dst, MigrateKeys at a time per slot,
// with the operator's credentials (the destination requires them).
func (r *reconciler) moveKeys(ctx context.Context, src, dst *member, slots []int) error {
	host, port, err := net.SplitHostPort(r.migrateAddr(dst))
	if err != nil {
		return err
	}
	var authArgs []any
	switch {
	case r.auth.Username != "":
		authArgs = []any{"auth2", r.auth.Username, r.auth.Password}
	case r.auth.Password != "":
		authArgs = []any{"auth", r.auth.Password}
	}
	left := slots
	for len(left) > 0 {
		p := src.client.Pipeline()
		gets := make([]*redis.StringSliceCmd, len(left))
		for i, s := range left {
			gets[i] = p.ClusterGetKeysInSlot(ctx, s, MigrateKeys)
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("CLUSTER GETKEYSINSLOT on %s: %w", src.addr, err)
		}
		var next []int
		mp := src.client.Pipeline()
		var migs []*redis.Cmd
		for i, s := range left {
			keys := gets[i].Val()
			if len(keys) == 0 {
				continue
			}
			next = append(next, s)
			args := []any{"migrate", host, port, "", 0, 10000, "replace"}
			args = append(args, authArgs...)
			args = append(args, "keys")
			for _, k := range keys {
				args = append(args, k)
			}
			migs = append(migs, mp.Do(ctx, args...))
		}
		if len(migs) > 0 {
			_, _ = mp.Exec(ctx)
			for _, c := range migs {
				if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
					return fmt.Errorf("MIGRATE from %s to %s: %w", src.addr, dst.addr, redactAuth(err, r.auth))
				}
			}
		}
		left = next
	}
	return nil
}

// migrateAddr is where the source connects for MIGRATE: the address the cluster itself
// uses for dst (its announced IP), so no name has to resolve inside the server.
func (r *reconciler) migrateAddr(dst *member) string {
	if n := dst.self(); n != nil && n.Addr != "" && !strings.HasPrefix(n.Addr, ":") {
		return n.Addr
	}
	return dst.addr
}

// setOwner ends the migration of slots: destination first (it bumps its epoch and claims
// them), then the source, then every other primary, as the Redis docs order it.
func (r *reconciler) setOwner(ctx context.Context, src, dst *member, slots []int) error {
	order := []*member{dst, src}
	for _, m := range r.v.reachable() {
		if m != src && m != dst && m.self().primary() {
			order = append(order, m)
		}
	}
	for _, m := range order {
		if err := pipeAll(ctx, m.client, slots, func(p redis.Pipeliner, s int) {
			p.Do(ctx, "cluster", "setslot", s, "node", dst.id)
		}); err != nil {
			return fmt.Errorf("SETSLOT NODE %s on %s: %w", dst.addr, m.addr, err)
		}
	}
	return nil
}

// finishOpen completes slots an interrupted call left MIGRATING or IMPORTING.
func (r *reconciler) finishOpen(ctx context.Context) (bool, error) {
	owners := r.v.owners()
	did := false
	for _, src := range r.v.reachable() {
		byDst := map[string][]int{}
		for slot, dstID := range src.self().Migrating {
			byDst[dstID] = append(byDst[dstID], slot)
		}
		for dstID, slots := range byDst {
			dst, ok := r.v.byID[dstID]
			if !ok || dst.err != nil {
				// The destination is not one of ours any more: give the slots back.
				if err := pipeAll(ctx, src.client, slots, func(p redis.Pipeliner, s int) {
					p.Do(ctx, "cluster", "setslot", s, "stable")
				}); err != nil {
					return did, fmt.Errorf("SETSLOT STABLE on %s: %w", src.addr, err)
				}
				did = true
				continue
			}
			sort.Ints(slots)
			var reopen []int
			for _, s := range slots {
				if dst.self().Importing[s] != src.id {
					reopen = append(reopen, s)
				}
			}
			if len(reopen) > 0 {
				if err := pipeAll(ctx, dst.client, reopen, func(p redis.Pipeliner, s int) {
					p.Do(ctx, "cluster", "setslot", s, "importing", src.id)
				}); err != nil {
					return did, fmt.Errorf("SETSLOT IMPORTING on %s: %w", dst.addr, err)
				}
			}
			if err := r.moveSlots(ctx, src, dst, slots, false); err != nil {
				return did, err
			}
			did = true
		}
	}
	for _, dst := range r.v.reachable() {
		var stale []int
		bySrc := map[string][]int{}
		for slot, srcID := range dst.self().Importing {
			srcM, ok := r.v.byID[srcID]
			switch {
			case ok && owners[slot] == srcID && srcM.self().Migrating[slot] == dst.id:
				// handled above (or the next call)
			case ok && owners[slot] == srcID && srcM.err == nil:
				bySrc[srcID] = append(bySrc[srcID], slot)
			default:
				stale = append(stale, slot)
			}
		}
		if len(stale) > 0 {
			if err := pipeAll(ctx, dst.client, stale, func(p redis.Pipeliner, s int) {
				p.Do(ctx, "cluster", "setslot", s, "stable")
			}); err != nil {
				return did, fmt.Errorf("SETSLOT STABLE on %s: %w", dst.addr, err)
			}
			did = true
		}
		for srcID, slots := range bySrc {
			sort.Ints(slots)
			src := r.v.byID[srcID]
			if err := pipeAll(ctx, src.client, slots, func(p redis.Pipeliner, s int) {
				p.Do(ctx, "cluster", "setslot", s, "migrating", dst.id)
			}); err != nil {
				return did, fmt.Errorf("SETSLOT MIGRATING on %s: %w", src.addr, err)
			}
			if err := r.moveSlots(ctx, src, dst, slots, false); err != nil {
				return did, err
			}
			did = true
		}
	}
	return did, nil
}

// removeDrained resets the servers beyond the wanted ordinals once they hold no slot and
// no key, so they leave the cluster; forgetGone then drops their old IDs everywhere.
func (r *reconciler) removeDrained(ctx context.Context) (bool, error) {
	if !r.stable() {
		return false, nil
	}
	a := r.v.authority()
	var drained []*member
	for _, m := range r.v.members[r.wanted():] {
		if m.err != nil {
			continue
		}
		self := m.self()
		if n := a.nodes[m.id]; n != nil && n.slotCount() > 0 || self.slotCount() > 0 {
			return false, nil // still being drained
		}
		if self.MasterID != "" || len(m.nodes) > 1 {
			drained = append(drained, m)
		}
	}
	// A wanted server still replicating a drained one is moved first (placeReplicas).
	for _, m := range r.v.members[:r.wanted()] {
		for _, d := range drained {
			if m.self().MasterID == d.id {
				return false, nil
			}
		}
	}
	// Replicas first, so no replica is left following a primary that just left.
	sort.Slice(drained, func(i, j int) bool { return drained[i].self().MasterID != "" && drained[j].self().MasterID == "" })
	for _, m := range drained {
		if m.self().MasterID == "" && m.keys > 0 {
			return false, fmt.Errorf("%s holds no slot but %d keys; not resetting it", m.addr, m.keys)
		}
		if err := m.client.Do(ctx, "cluster", "reset", "hard").Err(); err != nil {
			return false, fmt.Errorf("CLUSTER RESET on %s: %w", m.addr, err)
		}
	}
	return len(drained) > 0, nil
}

// pipeAll sends one command per slot in a single pipeline and returns the first error.
func pipeAll(ctx context.Context, c *redis.Client, slots []int, add func(redis.Pipeliner, int)) error {
	p := c.Pipeline()
	for _, s := range slots {
		add(p, s)
	}
	cmds, err := p.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, cmd := range cmds {
		if e := cmd.Err(); e != nil {
			return fmt.Errorf("%v: %w", cmd.Args()[:4], e)
		}
	}
	return err
}

// redactAuth keeps the password out of an error that echoes the command.
func redactAuth(err error, a Auth) error {
	if a.Password == "" || !strings.Contains(err.Error(), a.Password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), a.Password, "<redacted>"))
}
