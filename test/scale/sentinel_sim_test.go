//go:build scale

package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionops/session-operator/internal/render"
)

// simSentinel answers, on one loopback port, for every Sentinel of every store of the
// fleet: what the operator's observer asks (AUTH, CLIENT SETNAME, SENTINEL MASTER,
// SENTINEL REPLICAS, DBSIZE, SUBSCRIBE, PING), and it announces +switch-master on the
// subscriptions of a store's Sentinels when told to.
//
// The manager reaches it through its normal code path: its dialer (simDialer, the only
// test-only part) connects every address here and first sends the address it was asked
// for, the way a proxy protocol header would, so the simulation knows which Sentinel (or
// server) of which store each connection stands for. Each store has three servers and
// three Sentinels, its primary the first server until a switch.
type simSentinel struct {
	ln net.Listener

	mu      sync.Mutex
	primary map[string]int                   // "ns/cluster" -> index of the primary
	subs    map[string]map[*simConn]struct{} // logical Sentinel address -> subscribed connections

	open, peak, accepted atomic.Int64
	commands             atomic.Int64
}

type simConn struct {
	c       net.Conn
	wmu     sync.Mutex
	logical string
}

const simReplicas = 3

func startSimSentinel() (*simSentinel, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &simSentinel{ln: ln, primary: map[string]int{}, subs: map[string]map[*simConn]struct{}{}}
	go s.serve()
	return s, nil
}

func (s *simSentinel) addr() string { return s.ln.Addr().String() }

func (s *simSentinel) close() { _ = s.ln.Close() }

func (s *simSentinel) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		if n := s.open.Add(1); n > s.peak.Load() {
			s.peak.Store(n)
		}
		go s.handle(&simConn{c: c})
	}
}

// simDialer is the manager's dialer in the benchmark: every address leads to the
// simulation, which is told the address first.
func simDialer(sim string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", sim)
		if err != nil {
			return nil, err
		}
		if _, err := fmt.Fprintf(c, "SIMADDR %s\r\n", addr); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// storeOf is the "ns/cluster" a logical address belongs to:
// <pod>.<service>.<namespace>.svc.<domain>:<port>, the pod named <cluster>-sentinel-<i>
// or <cluster>-store-<i>.
func storeOf(logical string) (ns, cluster string) {
	host, _, _ := net.SplitHostPort(logical)
	parts := strings.Split(host, ".")
	if len(parts) < 3 {
		return "", ""
	}
	pod := parts[0]
	for _, suffix := range []string{"-sentinel-", "-store-"} {
		if i := strings.LastIndex(pod, suffix); i > 0 {
			return parts[2], pod[:i]
		}
	}
	return parts[2], ""
}

func names(ns, cluster string) render.Names {
	return render.Names{Cluster: cluster, Namespace: ns, Domain: render.DefaultClusterDomain}
}

func (s *simSentinel) handle(sc *simConn) {
	defer func() {
		s.open.Add(-1)
		s.mu.Lock()
		if m := s.subs[sc.logical]; m != nil {
			delete(m, sc)
			if len(m) == 0 {
				delete(s.subs, sc.logical)
			}
		}
		s.mu.Unlock()
		sc.c.Close()
	}()
	r := bufio.NewReaderSize(sc.c, 512)
	subscribed := false
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		if len(args) == 0 {
			continue
		}
		s.commands.Add(1)
		cmd := strings.ToUpper(args[0])
		var out []byte
		switch {
		case cmd == "SIMADDR" && len(args) == 2:
			sc.logical = args[1]
			continue
		case cmd == "AUTH", cmd == "CLIENT":
			out = []byte("+OK\r\n")
		case cmd == "PING" && subscribed:
			out = respArray("pong", "")
		case cmd == "PING":
			out = []byte("+PONG\r\n")
		case cmd == "DBSIZE":
			out = []byte(":0\r\n")
		case cmd == "ACL" && len(args) > 1 && strings.EqualFold(args[1], "SETUSER"):
			out = []byte("+OK\r\n")
		case cmd == "ACL" && len(args) > 1 && strings.EqualFold(args[1], "USERS"):
			out = []byte("*0\r\n")
		case cmd == "SUBSCRIBE":
			s.mu.Lock()
			if s.subs[sc.logical] == nil {
				s.subs[sc.logical] = map[*simConn]struct{}{}
			}
			s.subs[sc.logical][sc] = struct{}{}
			s.mu.Unlock()
			subscribed = true
			for i, ch := range args[1:] {
				out = append(out, "*3\r\n$9\r\nsubscribe\r\n"...)
				out = appendBulk(out, ch)
				out = append(out, ':')
				out = strconv.AppendInt(out, int64(i+1), 10)
				out = append(out, '\r', '\n')
			}
		case cmd == "SENTINEL" && len(args) == 3:
			out = s.sentinel(sc.logical, strings.ToUpper(args[1]), args[2])
		default:
			out = []byte("-ERR unknown command\r\n")
		}
		sc.wmu.Lock()
		_, err = sc.c.Write(out)
		sc.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// sentinel answers SENTINEL MASTER / REPLICAS / GET-MASTER-ADDR-BY-NAME for the store the
// connection's Sentinel belongs to.
func (s *simSentinel) sentinel(logical, sub, master string) []byte {
	ns, cluster := storeOf(logical)
	if cluster != master {
		return []byte("-ERR No such master with that name\r\n")
	}
	s.mu.Lock()
	idx := s.primary[ns+"/"+cluster]
	s.mu.Unlock()
	hosts := names(ns, cluster).StoreHosts(simReplicas)
	primary := hosts[idx]
	port := strconv.Itoa(render.RedisPort)
	switch sub {
	case "MASTER":
		return respArray("name", master, "ip", primary, "port", port, "runid", "sim", "flags", "master",
			"link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0", "last-ok-ping-reply", "300",
			"last-ping-reply", "300", "down-after-milliseconds", "5000", "info-refresh", "1000", "role-reported", "master",
			"role-reported-time", "100000", "config-epoch", "1", "num-slaves", "2", "num-other-sentinels", "2",
			"quorum", "2", "failover-timeout", "60000", "parallel-syncs", "1")
	case "REPLICAS", "SLAVES":
		var out []byte
		out = append(out, '*')
		out = strconv.AppendInt(out, simReplicas-1, 10)
		out = append(out, '\r', '\n')
		for i, h := range hosts {
			if i == idx {
				continue
			}
			out = append(out, respArray("name", h+":"+port, "ip", h, "port", port, "runid", "sim", "flags", "slave",
				"last-ok-ping-reply", "300", "role-reported", "slave", "master-link-status", "ok",
				"master-host", primary, "master-port", port, "slave-priority", "100", "slave-repl-offset", "1000")...)
		}
		return out
	case "GET-MASTER-ADDR-BY-NAME":
		return respArray(primary, port)
	}
	return []byte("-ERR unknown subcommand\r\n")
}

// switchPrimary moves the store's primary to its next server and announces it on the
// subscriptions of each of its Sentinels, as each Sentinel would. It returns the new
// primary's pod name and the number of subscriptions told.
func (s *simSentinel) switchPrimary(ns, cluster string) (string, int) {
	hosts := names(ns, cluster).StoreHosts(simReplicas)
	s.mu.Lock()
	key := ns + "/" + cluster
	old := s.primary[key]
	next := (old + 1) % simReplicas
	s.primary[key] = next
	var conns []*simConn
	for _, h := range names(ns, cluster).SentinelHosts(simReplicas) {
		for c := range s.subs[net.JoinHostPort(h, strconv.Itoa(render.SentinelPort))] {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	port := strconv.Itoa(render.RedisPort)
	msg := respArray("message", "+switch-master", strings.Join([]string{cluster, hosts[old], port, hosts[next], port}, " "))
	for _, c := range conns {
		c.wmu.Lock()
		_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.c.Write(msg)
		c.wmu.Unlock()
	}
	return render.PodFromHost(hosts[next]), len(conns)
}

// subscriptions counts the connections subscribed.
func (s *simSentinel) subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.subs {
		n += len(m)
	}
	return n
}

func respArray(items ...string) []byte {
	out := []byte{'*'}
	out = strconv.AppendInt(out, int64(len(items)), 10)
	out = append(out, '\r', '\n')
	for _, it := range items {
		out = appendBulk(out, it)
	}
	return out
}

func appendBulk(out []byte, s string) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(s)), 10)
	out = append(out, '\r', '\n')
	out = append(out, s...)
	return append(out, '\r', '\n')
}

// readCommand reads one command: a RESP array of bulk strings, or an inline line.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 64 {
		return nil, fmt.Errorf("bad array %q", line)
	}
	args := make([]string, n)
	for i := range args {
		h, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimRight(h, "\r\n")[1:])
		if err != nil || l < 0 || l > 1<<16 {
			return nil, fmt.Errorf("bad bulk %q", h)
		}
		buf := make([]byte, l+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:l])
	}
	return args, nil
}
