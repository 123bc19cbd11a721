//go:build datapath

package datapath

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionops/session-operator/internal/rediscluster"
	"github.com/sessionops/session-operator/internal/render"
)

// A sharded store (store.shards) on real redis-server processes with cluster-enabled,
// driven by internal/rediscluster as the controller drives it, with the reference app in
// cluster mode in front. Servers listen on 127.0.0.1 with their own ports (the cluster
// bus on port+10000), so no host name is mapped.

const (
	shardedPerShard = 3 // store.replicas (its default): a primary and two replicas per shard
	shardedAppName  = "web"
)

// clusterAppCommands are what an app's ACL user needs on top of render.AppCommands to
// speak Redis Cluster: learn the slot map, follow ASK, and read from replicas if it wants.
var clusterAppCommands = []string{"+asking", "+readonly", "+readwrite",
	"+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+cluster|myid", "+cluster|keyslot"}

type shardedServer struct {
	ordinal int
	dir     string
	port    int
	proc    *proc
}

func (s *shardedServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

type shardedStore struct {
	t           *testing.T
	root        string
	nodeTimeout time.Duration
	operator    rediscluster.Auth
	appUser     string
	appPassword string
	servers     []*shardedServer
	appBinary   string
	apps        []*shardedApp
}

type shardedApp struct {
	name string
	port int
	proc *proc
}

func (a *shardedApp) url() string { return "http://127.0.0.1:" + strconv.Itoa(a.port) }

func newShardedStore(t *testing.T, nodeTimeout time.Duration) *shardedStore {
	root, err := os.MkdirTemp("", "datapath-sharded-")
	must(t, err)
	s := &shardedStore{t: t, root: root, nodeTimeout: nodeTimeout,
		operator: rediscluster.Auth{Username: render.UserOperator, Password: "operator pw " + strconv.Itoa(os.Getpid())},
		appUser:  render.AppUser(shardedAppName), appPassword: "app pw " + strconv.Itoa(os.Getpid())}
	t.Cleanup(func() {
		for _, a := range s.apps {
			if a.proc != nil {
				a.proc.kill(syscall.SIGKILL)
			}
		}
		for _, srv := range s.servers {
			if srv.proc != nil {
				srv.proc.kill(syscall.SIGKILL)
			}
		}
		if t.Failed() || os.Getenv("DATAPATH_KEEP") != "" {
			t.Logf("sharded store run directory kept: %s", root)
			return
		}
		os.RemoveAll(root)
	})
	return s
}

// aclLines are the servers' users as the Store mode renders them (default user off,
// operator, replication, the app's user on its keys), the app's with the cluster commands.
func (s *shardedStore) aclLines() []string {
	users := []render.ACLUser{
		{Name: render.UserDefault, Rules: []string{"~*", "&*", "+@all"}},
		{Name: render.UserOperator, On: true, Hashes: []string{render.PasswordHash(s.operator.Password)}, Rules: []string{"~*", "&*", "+@all"}},
		{Name: render.UserReplication, On: true, Hashes: []string{render.PasswordHash("replication pw")}, Rules: []string{"-@all", "+psync", "+replconf", "+ping"}},
		{Name: s.appUser, On: true, Hashes: []string{render.PasswordHash(s.appPassword)},
			Rules: append(append([]string{"~*", "&*"}, render.AppCommands...), clusterAppCommands...)},
	}
	var out []string
	for _, u := range users {
		out = append(out, u.Line())
	}
	return out
}

func clusterPort(t testing.TB) int {
	for range 100 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// addServer prepares and starts the next ordinal.
func (s *shardedStore) addServer() *shardedServer {
	srv := &shardedServer{ordinal: len(s.servers), dir: filepath.Join(s.root, "store-"+strconv.Itoa(len(s.servers)))}
	must(s.t, os.MkdirAll(srv.dir, 0o700))
	s.servers = append(s.servers, srv)
	s.startServer(srv, clusterPort(s.t))
	return srv
}

// startServer starts srv on port with its directory (nodes.conf, its identity, stays).
func (s *shardedStore) startServer(srv *shardedServer, port int) {
	srv.port = port
	conf := []string{
		"bind 127.0.0.1", "port " + strconv.Itoa(port), "dir " + srv.dir,
		"cluster-enabled yes", "cluster-config-file nodes.conf",
		"cluster-node-timeout " + strconv.FormatInt(s.nodeTimeout.Milliseconds(), 10),
		"cluster-announce-ip 127.0.0.1",
		// A shard that fails over must not stop the others (the default stops every write).
		"cluster-require-full-coverage no",
		`save ""`, "appendonly no",
		"masteruser " + render.UserReplication, "masterauth \"replication pw\"",
		"repl-diskless-sync yes", "repl-diskless-sync-delay 0",
	}
	conf = append(conf, s.aclLines()...)
	path := filepath.Join(srv.dir, "redis.conf")
	must(s.t, os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600))
	p, err := startProc(fmt.Sprintf("store-%d", srv.ordinal), []string{"redis-server", path}, os.Environ(), filepath.Join(srv.dir, "log"))
	must(s.t, err)
	srv.proc = p
	c := s.client(srv)
	defer c.Close()
	if err := waitFor(10*time.Second, func() bool { return c.Ping(context.Background()).Err() == nil }); err != nil {
		s.t.Fatalf("store-%d on %d did not answer: %v", srv.ordinal, port, err)
	}
}

func (s *shardedStore) client(srv *shardedServer) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: srv.addr(), Username: s.operator.Username, Password: s.operator.Password,
		Protocol: 2, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

func (s *shardedStore) nodes(n int) []string {
	var out []string
	for _, srv := range s.servers[:n] {
		out = append(out, srv.addr())
	}
	return out
}

// reconcile calls rediscluster.Reconcile as the controller does (every interval while
// busy) until it is not busy, and returns the last state and how many calls it took.
func (s *shardedStore) reconcile(spec rediscluster.Spec, interval, timeout time.Duration) (rediscluster.State, int) {
	deadline := time.Now().Add(timeout)
	var st rediscluster.State
	var err error
	for calls := 1; ; calls++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err = rediscluster.Reconcile(ctx, spec, s.operator)
		cancel()
		if err == nil && !st.Busy {
			return st, calls
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the cluster did not settle in %s (%d calls): step %q, err %v, state %+v", timeout, calls, st.Step, err, st)
		}
		time.Sleep(interval)
	}
}

// startApps runs n reference app instances in cluster mode, wired as the contract says.
func (s *shardedStore) startApps(n int, nodes []string, extra ...string) {
	if s.appBinary == "" {
		out := filepath.Join(s.root, "session-app")
		cmd := execCommand("go", "build", "-o", out, ".")
		cmd.Dir = filepath.Join(repoRoot(s.t), "examples", "session-app")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			s.t.Fatalf("building examples/session-app: %v\n%s", err, b)
		}
		s.appBinary = out
	}
	for range n {
		a := &shardedApp{name: fmt.Sprintf("app-%d", len(s.apps)), port: freePort(s.t)}
		env := append(os.Environ(),
			"SESSION_MODE=Store", "SESSION_TTL=30m0s", "POD_NAME="+a.name, "PORT="+strconv.Itoa(a.port),
			"SESSION_REDIS_MODE=cluster", "SESSION_REDIS_CLUSTER_NODES="+strings.Join(nodes, ","),
			"SESSION_REDIS_USERNAME="+s.appUser, "SESSION_REDIS_PASSWORD="+s.appPassword,
			"SESSION_REDIS_WAIT_REPLICAS=1")
		env = append(env, extra...)
		p, err := startProc(a.name, []string{s.appBinary}, env, filepath.Join(s.root, a.name+".log"))
		must(s.t, err)
		a.proc = p
		s.apps = append(s.apps, a)
		if err := waitFor(30*time.Second, func() bool {
			resp, err := http.Get(a.url() + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}); err != nil {
			b, _ := os.ReadFile(filepath.Join(s.root, a.name+".log"))
			s.t.Fatalf("%s not ready: %v\n%s", a.name, err, b)
		}
	}
}

func (s *shardedStore) appURLs() []string {
	var out []string
	for _, a := range s.apps {
		if a.proc.running() {
			out = append(out, a.url())
		}
	}
	return out
}

// shardOfSessions maps each session to the address of its slot's primary now.
func (s *shardedStore) primaryOf(ids []string) map[string]string {
	c := s.client(s.servers[0])
	defer c.Close()
	ctx := context.Background()
	slots, err := c.ClusterSlots(ctx).Result()
	must(s.t, err)
	out := map[string]string{}
	for _, id := range ids {
		k, err := c.ClusterKeySlot(ctx, "session:"+id).Result()
		must(s.t, err)
		for _, r := range slots {
			if int64(r.Start) <= k && k <= int64(r.End) {
				out[id] = r.Nodes[0].Addr
			}
		}
	}
	return out
}

func (s *shardedStore) myID(srv *shardedServer) string {
	c := s.client(srv)
	defer c.Close()
	id, err := c.Do(context.Background(), "cluster", "myid").Text()
	must(s.t, err)
	return id
}

func (s *shardedStore) role(srv *shardedServer) (map[string]string, error) {
	c := s.client(srv)
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(info), nil
}

func (s *shardedStore) serverAt(addr string) *shardedServer {
	for _, srv := range s.servers {
		if srv.addr() == addr {
			return srv
		}
	}
	s.t.Fatalf("no server at %s", addr)
	return nil
}
