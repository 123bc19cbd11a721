package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startACLRedis runs a real redis-server on loopback whose default user is off and whose
// operator user may do everything, as the store's servers boot.
func startACLRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server missing; on Debian: apt-get install -y redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := strings.Join([]string{
		"bind 127.0.0.1", fmt.Sprintf("port %d", port), `save ""`, "appendonly no", "dir " + dir,
		"user default off resetpass -@all", "user operator on >op-pw ~* &* +@all",
		"user app-gone on >x ~* -@all +get",
	}, "\n") + "\n"
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: addr, Username: "operator", Password: "op-pw", MaxRetries: -1})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSyncUsers applies users live on a real redis-server: a user with two passwords,
// then one; a managed user no longer wanted is deleted; an address whose name does not
// resolve is absent, not an error; a wrong operator password is an error.
func TestSyncUsers(t *testing.T) {
	addr := startACLRedis(t)
	ctx := context.Background()
	target := func(users ...[]string) UsersTarget {
		return UsersTarget{
			Username: "operator", Password: "op-pw",
			Servers:     []string{addr, "no-such-pod.invalid:6379"},
			ServerUsers: users,
			Managed:     func(n string) bool { return strings.HasPrefix(n, "app-") },
		}
	}
	auth := func(user, pw string) error {
		c := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err()
	}
	h := func(pw string) string { return "#" + fmt.Sprintf("%x", sha256sum(pw)) }

	both := target([]string{"app-web", "reset", "on", h("old-pw"), h("new-pw"), "~session:*", "-@all", "+get", "+ping"})
	res, err := SyncUsers(ctx, both)
	if err != nil || !res.Complete(both) || !slices.Equal(res.Synced, []string{addr}) || len(res.Absent) != 1 {
		t.Fatalf("sync: %+v %v", res, err)
	}
	for _, pw := range []string{"old-pw", "new-pw"} {
		if err := auth("app-web", pw); err != nil {
			t.Errorf("app-web with %s: %v", pw, err)
		}
	}
	if err := auth("app-gone", "x"); err == nil {
		t.Error("a managed user no longer rendered is still there")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, Username: "app-web", Password: "new-pw", MaxRetries: -1})
	defer c.Close()
	if err := c.Get(ctx, "session:a").Err(); err != redis.Nil {
		t.Errorf("GET session:a: %v", err)
	}
	// An open connection stays authenticated while its password is dropped.
	if _, err := SyncUsers(ctx, target([]string{"app-web", "reset", "on", h("new-pw"), "~session:*", "-@all", "+get", "+ping"})); err != nil {
		t.Fatal(err)
	}
	if err := auth("app-web", "old-pw"); err == nil {
		t.Error("the dropped password still works")
	}
	if err := c.Get(ctx, "session:a").Err(); err != redis.Nil {
		t.Errorf("an open connection lost its session: %v", err)
	}
	wrong := both
	wrong.Password = "wrong"
	if res, err := SyncUsers(ctx, wrong); err == nil || res.Complete(wrong) {
		t.Errorf("a wrong operator password: %+v %v", res, err)
	}
}

func sha256sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
