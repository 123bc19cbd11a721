package rediscluster

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clientName names the operator's connections (CLIENT LIST shows who is there).
const clientName = "session-operator-cluster"

// nodeInfo is one line of CLUSTER NODES.
type nodeInfo struct {
	ID       string
	Addr     string // ip:port
	Hostname string // announced hostname, "" when none
	Flags    map[string]bool
	MasterID string // "" for a primary
	// Connected: the bus link to it is up (as the reporting node sees it).
	Connected bool
	Slots     []slotRange
	// Migrating maps slot -> destination node ID; Importing slot -> source node ID
	// (only on the myself line).
	Migrating map[int]string
	Importing map[int]string
}

type slotRange struct{ lo, hi int }

func (n *nodeInfo) slotCount() int {
	c := 0
	for _, r := range n.Slots {
		c += r.hi - r.lo + 1
	}
	return c
}

func (n *nodeInfo) primary() bool { return n.Flags["master"] }
func (n *nodeInfo) failing() bool { return n.Flags["fail"] || n.Flags["fail?"] }

// member is one Spec node as it answered.
type member struct {
	ordinal int
	addr    string
	client  *redis.Client
	err     error
	id      string               // CLUSTER MYID
	nodes   map[string]*nodeInfo // its CLUSTER NODES by ID
	stateOK bool                 // cluster_state:ok
	keys    int64                // DBSIZE
	// replicaOf is where a replica's replication link points (master_host:master_port),
	// linkUp whether it is up.
	replicaOf string
	linkUp    bool
}

func (m *member) self() *nodeInfo {
	if m.nodes == nil {
		return nil
	}
	return m.nodes[m.id]
}

// view is what every Spec node said in one round.
type view struct {
	members []*member
	byID    map[string]*member
}

func newClient(addr string, auth Auth) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Username: auth.Username, Password: auth.Password, Protocol: 2,
		ClientName:  clientName,
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1, PoolSize: 2, DisableIdentity: true,
	})
}

// gather asks every node, in parallel, who it is and what it knows.
func gather(ctx context.Context, addrs []string, auth Auth) (*view, error) {
	v := &view{byID: map[string]*member{}}
	var wg sync.WaitGroup
	for i, a := range addrs {
		m := &member{ordinal: i, addr: a, client: newClient(a, auth)}
		v.members = append(v.members, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.err = m.load(ctx)
		}()
	}
	wg.Wait()
	for _, m := range v.members {
		if m.err != nil {
			continue
		}
		if other, dup := v.byID[m.id]; dup {
			v.close()
			return nil, fmt.Errorf("redis cluster: %s and %s report the same node ID %s", other.addr, m.addr, m.id)
		}
		v.byID[m.id] = m
	}
	return v, nil
}

func (m *member) load(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pipe := m.client.Pipeline()
	myid := pipe.Do(cctx, "cluster", "myid")
	nodes := pipe.ClusterNodes(cctx)
	info := pipe.ClusterInfo(cctx)
	size := pipe.DBSize(cctx)
	repl := pipe.Info(cctx, "replication")
	if _, err := pipe.Exec(cctx); err != nil {
		return fmt.Errorf("%s: %w", m.addr, err)
	}
	m.id = myid.Val().(string)
	var err error
	if m.nodes, err = parseNodes(nodes.Val()); err != nil {
		return fmt.Errorf("%s: CLUSTER NODES: %w", m.addr, err)
	}
	if m.self() == nil {
		return fmt.Errorf("%s: CLUSTER NODES has no line for itself (%s)", m.addr, m.id)
	}
	m.stateOK = strings.Contains(info.Val(), "cluster_state:ok")
	m.keys = size.Val()
	kv := map[string]string{}
	for _, line := range strings.Split(repl.Val(), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			kv[k] = v
		}
	}
	if kv["role"] == "slave" {
		m.replicaOf = net.JoinHostPort(kv["master_host"], kv["master_port"])
		m.linkUp = kv["master_link_status"] == "up"
	}
	return nil
}

func (v *view) close() {
	for _, m := range v.members {
		_ = m.client.Close()
	}
}

func (v *view) reachable() []*member {
	var out []*member
	for _, m := range v.members {
		if m.err == nil {
			out = append(out, m)
		}
	}
	return out
}

// parseNodes reads CLUSTER NODES:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
func parseNodes(s string) (map[string]*nodeInfo, error) {
	out := map[string]*nodeInfo{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			if len(f) == 0 {
				continue
			}
			return nil, fmt.Errorf("short line %q", line)
		}
		n := &nodeInfo{ID: f[0], Flags: map[string]bool{}, Migrating: map[int]string{}, Importing: map[int]string{}}
		addr, host, _ := strings.Cut(f[1], ",")
		n.Addr, _, _ = strings.Cut(addr, "@")
		n.Hostname = host
		for _, fl := range strings.Split(f[2], ",") {
			n.Flags[fl] = true
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		n.Connected = f[7] == "connected"
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				body := strings.Trim(sl, "[]")
				if slot, dst, ok := strings.Cut(body, "->-"); ok {
					k, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("slot %q", sl)
					}
					n.Migrating[k] = dst
				} else if slot, src, ok := strings.Cut(body, "-<-"); ok {
					k, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("slot %q", sl)
					}
					n.Importing[k] = src
				}
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("slot %q", sl)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("slot %q", sl)
				}
			}
			n.Slots = append(n.Slots, slotRange{a, b})
		}
		out[n.ID] = n
	}
	return out, nil
}

// addrOf is the address to report for a node ID: the Spec address when it is one of
// ours, else the announced hostname (with the port) or ip:port.
func (v *view) addrOf(id string) string {
	if m, ok := v.byID[id]; ok {
		return m.addr
	}
	for _, m := range v.reachable() {
		if n, ok := m.nodes[id]; ok {
			if n.Flags["noaddr"] || strings.HasPrefix(n.Addr, ":") {
				return "noaddr:" + id
			}
			if n.Hostname != "" {
				_, port, _ := net.SplitHostPort(n.Addr)
				return net.JoinHostPort(n.Hostname, port)
			}
			return n.Addr
		}
	}
	return id
}

// authority is the node whose view the others are judged by: the reachable one whose
// config says most (most slots owned by others it knows, then most nodes known).
func (v *view) authority() *member {
	var best *member
	bestScore := -1
	for _, m := range v.reachable() {
		score := 0
		for _, n := range m.nodes {
			score += n.slotCount()*100 + 1
		}
		if score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

// owners maps each slot to the node ID that holds it in the authority's view.
func (v *view) owners() map[int]string {
	out := map[int]string{}
	a := v.authority()
	if a == nil {
		return out
	}
	for _, n := range a.nodes {
		for _, r := range n.Slots {
			for s := r.lo; s <= r.hi; s++ {
				out[s] = n.ID
			}
		}
	}
	return out
}

// state is the State of this view. perShard > 0 orders shards by placement (the shard of
// the lowest ordinal among its members), which is the same order for Observe.
func (v *view) state(perShard int) State {
	st := State{OK: true}
	a := v.authority()
	for _, m := range v.members {
		if m.err != nil {
			st.Unreachable = append(st.Unreachable, m.addr)
			continue
		}
		// A server outside the cluster (drained and reset, or not met yet) is not asked.
		if a != nil && a.nodes[m.id] != nil {
			st.OK = st.OK && m.stateOK
		}
	}
	if a == nil {
		st.OK = false
		return st
	}
	// Shards: every primary with slots, or with replicas, or one of ours that is a primary.
	type shard struct {
		primary  *nodeInfo
		replicas []string
		minOrd   int
	}
	shards := map[string]*shard{}
	ord := func(id string) int {
		if m, ok := v.byID[id]; ok {
			return m.ordinal
		}
		return 1 << 30
	}
	for _, n := range a.nodes {
		if !n.primary() || n.Flags["noaddr"] || n.Flags["handshake"] {
			continue
		}
		_, ours := v.byID[n.ID]
		if n.slotCount() == 0 && !ours {
			continue
		}
		shards[n.ID] = &shard{primary: n, minOrd: ord(n.ID)}
		st.SlotsCovered += n.slotCount()
	}
	for _, n := range a.nodes {
		if n.MasterID == "" {
			continue
		}
		if s, ok := shards[n.MasterID]; ok {
			s.replicas = append(s.replicas, v.addrOf(n.ID))
			s.minOrd = min(s.minOrd, ord(n.ID))
		}
	}
	list := make([]*shard, 0, len(shards))
	for _, s := range shards {
		// An empty primary with no replicas that is not placed as a shard's first member
		// is a server waiting to be placed, not a shard.
		if s.primary.slotCount() == 0 && len(s.replicas) == 0 && perShard > 0 && s.minOrd%perShard != 0 {
			continue
		}
		sort.Strings(s.replicas)
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].minOrd < list[j].minOrd })
	for i, s := range list {
		p := ""
		if !s.primary.failing() {
			p = v.addrOf(s.primary.ID)
		}
		st.Shards = append(st.Shards, ShardState{Index: i, Primary: p, Replicas: s.replicas, Slots: s.primary.slotCount()})
	}
	return st
}

// openMigrations lists slots some primary has MIGRATING or IMPORTING.
func (v *view) openMigrations() []int {
	var out []int
	for _, m := range v.reachable() {
		s := m.self()
		for k := range s.Migrating {
			out = append(out, k)
		}
		for k := range s.Importing {
			out = append(out, k)
		}
	}
	return out
}

// membersNeeded is one past the highest ordinal that still belongs to the cluster (it holds
// slots, replicates, or another member knows it).
func (v *view) membersNeeded() int {
	need := 0
	a := v.authority()
	for _, m := range v.reachable() {
		if a != nil && a.nodes[m.id] != nil && (len(a.nodes) > 1 || m.self().slotCount() > 0) {
			need = max(need, m.ordinal+1)
		}
	}
	return need
}
