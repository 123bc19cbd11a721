package rediscluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Real redis-server processes with cluster-enabled, the default user off and the
// operator's ACL user, as the sharded store renders them.

var testAuth = Auth{Username: "operator", Password: "op secret"}

type server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func freePort(t *testing.T) int {
	// The cluster bus listens on port+10000: both must be free.
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+10000 > 65535 {
			continue
		}
		if b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

func startServer(t *testing.T, dir string, port int) *server {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
save ""
appendonly no
user default off
user operator on #%s ~* &* +@all
user replication on >repl -@all +psync +replconf +ping
masteruser replication
masterauth repl
`, port, dir, sha(testAuth.Password))
	if err := os.WriteFile(filepath.Join(dir, "redis.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", filepath.Join(dir, "redis.conf"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	s := &server{dir: dir, port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(s.done) }()
	t.Cleanup(s.kill)
	c := newClient(s.addr(), testAuth)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("redis-server on %d did not answer:\n%s", port, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func startServers(t *testing.T, n int) []*server {
	root := t.TempDir()
	var out []*server
	for i := range n {
		out = append(out, startServer(t, filepath.Join(root, strconv.Itoa(i)), freePort(t)))
	}
	return out
}

func addrs(ss []*server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.addr())
	}
	return out
}

// converge calls Reconcile until it is no longer busy, as the controller would.
func converge(t *testing.T, spec Spec, timeout time.Duration) (State, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	calls := 0
	var last State
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := Reconcile(context.Background(), spec, testAuth)
		calls++
		last, lastErr = st, err
		if err == nil && !st.Busy {
			return st, calls
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not converged after %s (%d calls): step %q err %v state %+v", timeout, calls, last.Step, lastErr, last)
	return last, calls
}

func clusterClient(ss []*server) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: addrs(ss), Username: testAuth.Username, Password: testAuth.Password, Protocol: 2,
		MaxRedirects: 16,
	})
}

func removeAll(dir string) error { return os.RemoveAll(dir) }
