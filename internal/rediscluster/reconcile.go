package rediscluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
)

type reconciler struct {
	spec Spec
	auth Auth
	v    *view
}

// wanted is how many ordinals the wanted topology uses.
func (r *reconciler) wanted() int { return min(r.spec.Shards*r.spec.PerShard, len(r.spec.Nodes)) }

func (r *reconciler) shardOf(ordinal int) int { return ordinal / r.spec.PerShard }

// run takes the first step the cluster needs and reports it ("" when none was needed).
// Every step is conditional on what the cluster reports, so a second call after a
// successful one finds less to do, and a healthy cluster gets no command that writes.
func (r *reconciler) run(ctx context.Context) (string, error) {
	if len(r.spec.Nodes) < r.spec.Shards*r.spec.PerShard {
		return "", nil // the StatefulSet grows first; pending() says so
	}
	// Changes wait until every server that must exist answers: a server that is down is the
	// cluster's own failover's business, and a plan made without it could forget it.
	for _, m := range r.v.members[:max(r.wanted(), r.nodesNeeded(r.v))] {
		if m.err != nil {
			return "", nil // pending() reports it
		}
	}
	for _, m := range r.v.members {
		if m.err == nil && m.self().failing() {
			return "", nil
		}
	}
	steps := []struct {
		name string
		do   func(context.Context) (bool, error)
	}{
		{"meet", r.meet},
		{"forget", r.forgetGone},
		{"assign slots", r.assign},
		{"place replicas", r.placeReplicas},
		{"finish migration", r.finishOpen},
		{"migrate slots", r.migrate},
		{"remove drained shards", r.removeDrained},
	}
	for _, s := range steps {
		did, err := s.do(ctx)
		if err != nil {
			return s.name, err
		}
		if did {
			return s.name, nil
		}
	}
	return "", nil
}

// pending names what the cluster still lacks when this call changed nothing: a server
// that did not answer, gossip still spreading, or a failover under way.
func (r *reconciler) pending(v *view) string {
	if n := r.spec.Shards * r.spec.PerShard; len(r.spec.Nodes) < n {
		return fmt.Sprintf("wait for %d servers (%d listed)", n, len(r.spec.Nodes))
	}
	for _, m := range v.members[:max(r.wanted(), r.nodesNeeded(v))] {
		if m.err != nil {
			return "wait for " + m.addr
		}
	}
	a := v.authority()
	for _, m := range v.members[:r.wanted()] {
		if a == nil || a.nodes[m.id] == nil || len(m.nodes) < r.wanted() {
			return "wait for gossip"
		}
	}
	for _, m := range v.reachable() {
		if m.ordinal >= r.nodesNeeded(v) {
			continue
		}
		if !m.stateOK {
			return "wait for cluster_state ok"
		}
		for _, n := range m.nodes {
			if n.failing() || n.Flags["handshake"] {
				return "wait for failure detection"
			}
		}
	}
	if len(v.openMigrations()) > 0 {
		return "migration open"
	}
	// Every wanted shard has a primary and the others replicate it, as the cluster at
	// large (the authority) sees it, not only the replica itself.
	for s := 0; s < r.spec.Shards; s++ {
		p := r.shardPrimary(s)
		if p == "" {
			return fmt.Sprintf("wait for a primary in shard %d", s)
		}
		for _, m := range v.members[s*r.spec.PerShard : (s+1)*r.spec.PerShard] {
			if n := a.nodes[m.id]; m.id != p && (n == nil || n.MasterID != p) {
				return fmt.Sprintf("wait for %s to replicate shard %d", m.addr, s)
			}
		}
	}
	count := map[int]int{}
	for _, id := range v.owners() {
		m, ok := v.byID[id]
		if !ok {
			return "slots held by a server not in the spec"
		}
		count[r.shardOf(m.ordinal)]++
	}
	for s := 0; s < max(r.spec.Shards, len(count)); s++ {
		if count[s] != r.target(s) {
			return "wait to migrate slots"
		}
	}
	if r.nodesNeeded(v) > r.wanted() {
		return "wait to remove drained servers"
	}
	return ""
}

// nodesNeeded: the wanted ordinals, or more while servers beyond them still belong to the
// cluster (a shard being drained, or not yet reset).
func (r *reconciler) nodesNeeded(v *view) int {
	need := r.wanted()
	a := v.authority()
	for _, m := range v.members[r.wanted():] {
		if m.err != nil {
			continue
		}
		if m.self().slotCount() > 0 || m.self().MasterID != "" || len(m.nodes) > 1 || (a != nil && a.nodes[m.id] != nil && a != m) {
			need = max(need, m.ordinal+1)
		}
	}
	return min(need, len(v.members))
}

// meet introduces every wanted server the cluster does not know yet to the authority, and
// tells every server the new address of a known one that came back elsewhere (the cluster
// bus dials addresses, not names, so servers that all moved at once would not find each
// other again). CLUSTER MEET takes an IP, so a host name is resolved first.
func (r *reconciler) meet(ctx context.Context) (bool, error) {
	a := r.v.authority()
	did := false
	for _, m := range r.v.members[:r.wanted()] {
		host, port, err := net.SplitHostPort(m.addr)
		if err != nil {
			return false, fmt.Errorf("node %s: %w", m.addr, err)
		}
		ip, err := resolve(ctx, host)
		if err != nil {
			return false, err
		}
		meet := func(from *member) error {
			if err := from.client.Do(ctx, "cluster", "meet", ip, port).Err(); err != nil {
				return fmt.Errorf("CLUSTER MEET %s on %s: %w", m.addr, from.addr, err)
			}
			did = true
			return nil
		}
		if m != a && (a.nodes[m.id] == nil || m.nodes[a.id] == nil) {
			if err := meet(a); err != nil {
				return false, err
			}
			continue
		}
		for _, o := range r.v.members[:r.wanted()] {
			if o == m {
				continue
			}
			// Only where o cannot reach m: a working link means the address works.
			if n := o.nodes[m.id]; n != nil && n.Addr != net.JoinHostPort(ip, port) && !n.Flags["handshake"] &&
				(n.failing() || !n.Connected) {
				if err := meet(o); err != nil {
					return false, err
				}
			}
		}
	}
	return did, nil
}

func resolve(ctx context.Context, host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolving %s: %v", host, err)
	}
	for _, ip := range ips {
		if p := net.ParseIP(ip); p != nil && p.To4() != nil {
			return ip, nil // the address family a single-stack cluster uses
		}
	}
	return ips[0], nil
}

// gossipComplete: every wanted server knows every other one.
func (r *reconciler) gossipComplete() bool {
	for _, m := range r.v.members[:r.wanted()] {
		for _, o := range r.v.members[:r.wanted()] {
			n := m.nodes[o.id]
			if n == nil || n.Flags["handshake"] || n.Flags["noaddr"] {
				return false
			}
		}
	}
	return true
}

// assign gives every slot to the first member of each wanted shard when no server holds
// any slot (a new cluster): shard s gets an even share, in one range.
func (r *reconciler) assign(ctx context.Context) (bool, error) {
	for _, m := range r.v.reachable() {
		for _, n := range m.nodes {
			if n.slotCount() > 0 {
				return false, nil
			}
		}
	}
	if !r.gossipComplete() {
		return false, nil
	}
	for s := 0; s < r.spec.Shards; s++ {
		m := r.v.members[s*r.spec.PerShard]
		lo, hi := s*Slots/r.spec.Shards, (s+1)*Slots/r.spec.Shards-1
		if err := m.client.Do(ctx, "cluster", "addslotsrange", lo, hi).Err(); err != nil {
			return false, fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, m.addr, err)
		}
	}
	return true, nil
}

// shardPrimary is the node ID that leads shard s now: the member that is a primary holding
// slots (after a failover any member may be), else the shard's first member when it is an
// empty primary (a new shard), else "".
func (r *reconciler) shardPrimary(s int) string {
	a := r.v.authority()
	lo, hi := s*r.spec.PerShard, min((s+1)*r.spec.PerShard, len(r.v.members))
	best, bestSlots := "", 0
	for _, m := range r.v.members[lo:hi] {
		if n := a.nodes[m.id]; n != nil && n.primary() && !n.failing() && n.slotCount() > bestSlots {
			best, bestSlots = m.id, n.slotCount()
		}
	}
	if best == "" && lo < hi {
		if n := a.nodes[r.v.members[lo].id]; n != nil && n.primary() && !n.failing() {
			best = n.ID
		}
	}
	return best
}

// placeReplicas makes each wanted shard's other members replicas of its primary.
func (r *reconciler) placeReplicas(ctx context.Context) (bool, error) {
	if !r.gossipComplete() || len(r.v.owners()) == 0 {
		return false, nil
	}
	did := false
	for s := 0; s < r.spec.Shards; s++ {
		p := r.shardPrimary(s)
		if p == "" {
			continue
		}
		lo, hi := s*r.spec.PerShard, min((s+1)*r.spec.PerShard, len(r.v.members))
		for _, m := range r.v.members[lo:hi] {
			self := m.self()
			if m.id == p {
				continue
			}
			if self.MasterID == p {
				// Placed, but replicating an address the primary left (every server came
				// back elsewhere at once): point it at the primary again.
				if n := m.nodes[p]; n != nil && !m.linkUp && m.replicaOf != "" && n.Addr != m.replicaOf && n.Connected && !n.failing() {
					if err := m.client.Do(ctx, "cluster", "replicate", p).Err(); err != nil {
						return false, fmt.Errorf("CLUSTER REPLICATE %s on %s: %w", r.v.addrOf(p), m.addr, err)
					}
					did = true
				}
				continue
			}
			if self.primary() && self.slotCount() > 0 {
				continue // holds slots: a resharding step moves them first
			}
			if m.nodes[p] == nil {
				continue // gossip first
			}
			if err := m.client.Do(ctx, "cluster", "replicate", p).Err(); err != nil {
				return false, fmt.Errorf("CLUSTER REPLICATE %s on %s: %w", r.v.addrOf(p), m.addr, err)
			}
			did = true
		}
	}
	return did, nil
}

// forgetGone removes node IDs that no Spec server has (every Spec server answered, so
// the ID is not one of them) and that hold no slots: a server gone for good, or the old
// identity of one that came back empty. CLUSTER FORGET goes to every server (the ban
// lasts 60 s, so gossip does not bring the ID back). A node still in handshake (a MEET
// under way; its ID is a placeholder) is left alone.
func (r *reconciler) forgetGone(ctx context.Context) (bool, error) {
	for _, m := range r.v.members {
		if m.err != nil {
			return false, nil
		}
	}
	gone := map[string]bool{}
	for _, m := range r.v.members {
		for id, n := range m.nodes {
			if _, ours := r.v.byID[id]; ours || n.slotCount() > 0 || n.Flags["handshake"] {
				continue
			}
			gone[id] = true
		}
	}
	if len(gone) == 0 {
		return false, nil
	}
	for id := range gone {
		for _, m := range r.v.members {
			n := m.nodes[id]
			if n == nil || m.self().MasterID == id {
				continue
			}
			if err := m.client.Do(ctx, "cluster", "forget", id).Err(); err != nil {
				return false, fmt.Errorf("CLUSTER FORGET %s on %s: %w", id, m.addr, err)
			}
		}
	}
	return true, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
