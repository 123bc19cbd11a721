package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Helpers that run real redis-server / redis-sentinel processes on 127.0.0.1
// for the Store-mode tests. Every process is killed in t.Cleanup.

const testRedisPassword = "s3cret-test-pw"

// redisProc is one redis-server or redis-sentinel started by a test.
type redisProc struct {
	Port int
	Addr string
	cmd  *exec.Cmd
	dir  string
	log  string
}

// requireBinary fails (never skips) when a Redis binary is missing: these
// tests are the proof that the Store backend works against the real thing.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: the Store-mode tests need real Redis processes; "+
			"install them with: apt-get install -y redis-server redis-sentinel", name)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedisServer runs redis-server with a password, no persistence, and
// optionally as a replica of primaryAddr.
func startRedisServer(t *testing.T, primaryAddr string) *redisProc {
	t.Helper()
	bin := requireBinary(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t)
	conf := []string{
		"bind 127.0.0.1",
		fmt.Sprintf("port %d", port),
		"daemonize no",
		`save ""`,
		"appendonly no",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
		"requirepass " + testRedisPassword,
		"masterauth " + testRedisPassword,
		"repl-diskless-sync yes",
		"repl-diskless-sync-delay 0",
		"replica-announce-ip 127.0.0.1",
	}
	if primaryAddr != "" {
		h, p, _ := net.SplitHostPort(primaryAddr)
		conf = append(conf, "replicaof "+h+" "+p)
	}
	p := startProc(t, bin, dir, "redis.conf", conf, port)
	waitFor(t, 10*time.Second, "redis-server "+p.Addr+" to answer PING", func() error {
		return pingRedis(p.Addr, testRedisPassword)
	})
	if primaryAddr != "" {
		waitFor(t, 15*time.Second, "replica "+p.Addr+" to sync with "+primaryAddr, func() error {
			info, err := redisInfo(p.Addr, testRedisPassword, "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" {
				return fmt.Errorf("master_link_status=%q", info["master_link_status"])
			}
			return nil
		})
	}
	return p
}

// startSentinel runs redis-sentinel watching primaryAddr under master name
// "mymaster", with auth on both the monitored Redis and the Sentinel itself.
func startSentinel(t *testing.T, primaryAddr string, quorum int, downAfter time.Duration) *redisProc {
	t.Helper()
	bin := requireBinary(t, "redis-sentinel")
	dir := t.TempDir()
	port := freePort(t)
	h, pp, _ := net.SplitHostPort(primaryAddr)
	conf := []string{
		"bind 127.0.0.1",
		fmt.Sprintf("port %d", port),
		"daemonize no",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "sentinel.log"),
		"requirepass " + testRedisPassword,
		"sentinel announce-ip 127.0.0.1",
		fmt.Sprintf("sentinel monitor mymaster %s %s %d", h, pp, quorum),
		"sentinel auth-pass mymaster " + testRedisPassword,
		fmt.Sprintf("sentinel down-after-milliseconds mymaster %d", downAfter.Milliseconds()),
		"sentinel failover-timeout mymaster 10000",
		"sentinel parallel-syncs mymaster 1",
	}
	p := startProc(t, bin, dir, "sentinel.conf", conf, port)
	waitFor(t, 10*time.Second, "redis-sentinel "+p.Addr+" to know the primary", func() error {
		addr, err := sentinelMaster(p.Addr)
		if err != nil {
			return err
		}
		if addr != primaryAddr {
			return fmt.Errorf("sentinel says primary is %s", addr)
		}
		return nil
	})
	return p
}

func startProc(t *testing.T, bin, dir, confName string, conf []string, port int) *redisProc {
	t.Helper()
	confPath := filepath.Join(dir, confName)
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &redisProc{Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir,
		log: filepath.Join(dir, strings.TrimSuffix(confName, ".conf")+".log")}
	t.Cleanup(func() { p.kill() })
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SESSION_APP_TEST_LOGS") != "" {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("--- %s log (%s) ---\n%s", filepath.Base(bin), p.Addr, tail(string(b), 3000))
			}
		}
	})
	return p
}

// kill SIGKILLs the process and reaps it; safe to call twice.
func (p *redisProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
}

func directClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: password, DialTimeout: time.Second,
		ReadTimeout: time.Second, MaxRetries: -1})
}

func pingRedis(addr, password string) error {
	c := directClient(addr, password)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func redisInfo(addr, password, section string) (map[string]string, error) {
	c := directClient(addr, password)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func sentinelMaster(addr string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: testRedisPassword,
		DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := c.GetMasterAddrByName(ctx, "mymaster").Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("unexpected reply %v", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }
