//go:build datapath

package datapath

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// TestDay2AppUserPermissions proves on the real, rendered store that an app's user can do
// what session stacks do and nothing that harms the store or another app: two apps,
// web confined to "session:" and api to "api:".
func TestDay2AppUserPermissions(t *testing.T) {
	c := newCluster(t, func(sc *sessionv1.SessionCluster) {
		sc.Spec.Apps[0].KeyPrefix = "session:"
		sc.Spec.Apps = append(sc.Spec.Apps, sessionv1.AppSpec{Name: "api", Image: "x", KeyPrefix: "api:"})
	})
	const apiPassword = "Api7-harness-pw-Vb51kQw2"
	in := c.inputs
	in.AppPasswords = map[string]string{"web": harnessPassword, "api": apiPassword}
	c.rerender(in)
	c.startStore()
	primary, err := c.sentinelsPrimary()
	must(t, err)
	must(t, c.waitSettled(primary, 60*time.Second))
	addr := fmt.Sprintf("%s:%d", c.redisPod(primary).addr, render.RedisPort)
	sentinel := fmt.Sprintf("%s:%d", c.sentinels[0].addr, render.SentinelPort)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn := func(addr, user, pw string) *redis.Client {
		r := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, Protocol: 2,
			DialTimeout: time.Second, ReadTimeout: 3 * time.Second, MaxRetries: -1})
		t.Cleanup(func() { r.Close() })
		return r
	}
	web := conn(addr, render.AppUser("web"), harnessPassword)
	api := conn(addr, render.AppUser("api"), apiPassword)
	must(t, api.Set(ctx, "api:secret", "api-data", time.Minute).Err())

	denied := func(who string, args ...any) {
		t.Helper()
		err := web.Do(ctx, args...).Err()
		if !isDenied(err) {
			t.Errorf("%s %v: want NOPERM, got %v", who, args, err)
		}
	}
	for _, cmd := range [][]any{
		{"FLUSHALL"}, {"FLUSHDB"}, {"CONFIG", "GET", "*"}, {"CONFIG", "SET", "notify-keyspace-events", ""},
		{"SHUTDOWN", "NOSAVE"}, {"REPLICAOF", "NO", "ONE"}, {"SLAVEOF", "NO", "ONE"},
		{"ACL", "LIST"}, {"ACL", "SETUSER", "app-web", "+@all"}, {"ACL", "DELUSER", "app-api"}, {"ACL", "LOAD"},
		{"DEBUG", "SLEEP", "0"}, {"MONITOR"}, {"KEYS", "*"}, {"CLIENT", "KILL", "TYPE", "normal"}, {"CLIENT", "LIST"},
		{"SAVE"}, {"BGREWRITEAOF"}, {"FAILOVER"}, {"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}, {"SCAN", "0"},
		// Another app's keys and channels, directly and from a script.
		{"GET", "api:secret"}, {"SET", "api:secret", "x"}, {"DEL", "api:secret"}, {"HGETALL", "api:secret"},
		{"EVAL", "return redis.call('GET', KEYS[1])", "1", "api:secret"},
		{"EVAL", "return redis.call('DEL', 'api:secret')", "0"},
		{"RENAME", "session:x", "api:x"}, {"PUBLISH", "api:events", "x"}, {"SUBSCRIBE", "api:events"},
	} {
		denied("app-web", cmd...)
	}
	if v, err := api.Get(ctx, "api:secret").Result(); err != nil || v != "api-data" {
		t.Errorf("api's key after web's attempts: %q %v", v, err)
	}

	// What session stacks run: Spring Session (hashes, sets, expiry, keyspace events),
	// connect-redis (strings with EX), PHP (SETEX, locking with SET NX), the reference
	// app (Lua, WAIT).
	for _, cmd := range [][]any{
		{"HSET", "session:s1", "creationTime", "1", "maxInactiveInterval", "1800"}, {"HGETALL", "session:s1"},
		{"PEXPIRE", "session:s1", "60000"}, {"SADD", "session:expirations:1", "s1"}, {"SMEMBERS", "session:expirations:1"},
		{"SET", "session:s2", "{}", "EX", "60"}, {"GET", "session:s2"}, {"EXPIRE", "session:s2", "60"}, {"SETEX", "session:s3", "60", "x"},
		{"SET", "session:s3.lock", "1", "NX", "PX", "5000"}, {"EXISTS", "session:s3"}, {"TTL", "session:s3"},
		{"EVAL", "return redis.call('HINCRBY', KEYS[1], 'n', 1)", "1", "session:s4"},
		{"WAIT", "1", "1000"}, {"MULTI"}, {"EXEC"}, {"INFO", "replication"}, {"ROLE"}, {"PING"},
		{"CLIENT", "SETNAME", "x"}, {"PUBLISH", "session:events", "x"}, {"RENAME", "session:s2", "session:s5"}, {"DEL", "session:s5"},
	} {
		if err := web.Do(ctx, cmd...).Err(); err != nil && err != redis.Nil {
			t.Errorf("app-web %v: %v", cmd, err)
		}
	}
	// Spring Session's keyspace events, with no CONFIG from the app.
	sub := web.Subscribe(ctx, "__keyevent@0__:expired")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribing to expiry events: %v", err)
	}
	must(t, web.Set(ctx, "session:short", "x", 100*time.Millisecond).Err())
	select {
	case m := <-sub.Channel():
		if m.Payload != "session:short" {
			t.Errorf("expired event for %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Error("no expired event: notify-keyspace-events is not on")
	}

	// The Sentinels: an app may find the primary and follow failovers, nothing more.
	sw := redis.NewSentinelClient(&redis.Options{Addr: sentinel, Username: render.AppUser("web"), Password: harnessPassword, Protocol: 2})
	defer sw.Close()
	if a, err := sw.GetMasterAddrByName(ctx, c.names.MasterName()).Result(); err != nil || a[0] != primary {
		t.Errorf("app-web asking a Sentinel for the primary: %v %v", a, err)
	}
	if err := sw.Sentinels(ctx, c.names.MasterName()).Err(); err != nil {
		t.Errorf("app-web SENTINEL SENTINELS: %v", err)
	}
	for _, cmd := range [][]any{
		{"SENTINEL", "FAILOVER", c.names.MasterName()}, {"SENTINEL", "SET", c.names.MasterName(), "quorum", "1"},
		{"SENTINEL", "REMOVE", c.names.MasterName()}, {"SENTINEL", "RESET", "*"}, {"SHUTDOWN"}, {"ACL", "LIST"},
		{"SENTINEL", "CONFIG", "SET", "resolve-hostnames", "no"},
	} {
		if err := sw.Process(ctx, redis.NewCmd(ctx, cmd...)); !isDenied(err) {
			t.Errorf("app-web on a Sentinel %v: want NOPERM, got %v", cmd, err)
		}
	}

	// Nobody gets in without a name, or with another app's password under its name.
	anon := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil {
		t.Error("the default user is on")
	}
	if err := authAs(addr, "default", harnessPassword); err == nil {
		t.Error("the default user accepts a password")
	}
	if err := authAs(addr, render.UserReplication, harnessPassword); err == nil {
		t.Error("an app password opens the replication user")
	}
	if err := authAs(addr, render.AppUser("api"), harnessPassword); err == nil {
		t.Error("web's password opens api's user")
	}
}

// isDenied: refused by the ACL (NOPERM; from a script, "can't access"), or for DEBUG by
// enable-debug-command, which stays at its default (no).
func isDenied(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "NOPERM") || strings.Contains(m, "can't access") || strings.Contains(m, "DEBUG command not allowed")
}
