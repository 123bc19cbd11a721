package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// UsersTarget is a store whose ACL users are to be made what the operator rendered.
type UsersTarget struct {
	// Username and Password authenticate (the operator's user).
	Username, Password string
	// Servers and Sentinels are host:port addresses, every one the StatefulSets may run.
	Servers, Sentinels []string
	// ServerUsers and SentinelUsers are ACL SETUSER arguments, the user's name first.
	ServerUsers, SentinelUsers [][]string
	// Managed reports whether a user name is the operator's to delete when no longer
	// rendered (an app removed from the spec).
	Managed func(name string) bool
	// Timeout bounds each server's exchange; 3 s when zero.
	Timeout time.Duration
	// Dial opens the connections; nil dials the address.
	Dial DialFunc
}

// UsersSync is what SyncUsers did.
type UsersSync struct {
	// Synced are the addresses that now hold exactly the rendered users.
	Synced []string
	// Absent are the addresses whose host name does not resolve: no pod runs there, and
	// one that starts will read the users from its Secret.
	Absent []string
}

// Complete reports whether every address either holds the users or has no pod.
func (s UsersSync) Complete(t UsersTarget) bool {
	return len(s.Synced)+len(s.Absent) == len(t.Servers)+len(t.Sentinels)
}

// SyncUsers applies the rendered ACL users live on every server and Sentinel of t (ACL
// SETUSER with reset, so the result does not depend on what was there; existing
// connections stay authenticated) and deletes managed users no longer rendered. It asks
// all addresses at once and returns the joined errors of those it could not update; an
// address whose name does not resolve is Absent, not an error.
func SyncUsers(ctx context.Context, t UsersTarget) (UsersSync, error) {
	timeout := t.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	var (
		mu   sync.Mutex
		out  UsersSync
		errs []error
		wg   sync.WaitGroup
	)
	run := func(addr string, users [][]string) {
		defer wg.Done()
		err := syncOne(ctx, addr, t, users, timeout)
		mu.Lock()
		defer mu.Unlock()
		var dnsErr *net.DNSError
		switch {
		case err == nil:
			out.Synced = append(out.Synced, addr)
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			out.Absent = append(out.Absent, addr)
		default:
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	for _, a := range t.Servers {
		wg.Add(1)
		go run(a, t.ServerUsers)
	}
	for _, a := range t.Sentinels {
		wg.Add(1)
		go run(a, t.SentinelUsers)
	}
	wg.Wait()
	slices.Sort(out.Synced)
	slices.Sort(out.Absent)
	return out, errors.Join(errs...)
}

func syncOne(ctx context.Context, addr string, t UsersTarget, users [][]string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{
		Addr: addr, Username: t.Username, Password: t.Password, ClientName: DefaultClientName,
		Protocol: 2, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolSize: 1, MaxRetries: -1, DialerRetries: 1, Dialer: t.Dial,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*timeout)
	defer cancel()
	want := map[string]bool{}
	for _, u := range users {
		if len(u) == 0 {
			continue
		}
		want[u[0]] = true
		args := []any{"ACL", "SETUSER"}
		for _, a := range u {
			args = append(args, a)
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER %s: %w", u[0], err)
		}
	}
	if t.Managed == nil {
		return nil
	}
	names, err := c.Do(ctx, "ACL", "USERS").StringSlice()
	if err != nil {
		return fmt.Errorf("ACL USERS: %w", err)
	}
	for _, n := range names {
		if !want[n] && t.Managed(n) {
			if err := c.Do(ctx, "ACL", "DELUSER", n).Err(); err != nil {
				return fmt.Errorf("ACL DELUSER %s: %w", n, err)
			}
		}
	}
	return nil
}
