package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A sharded store (SESSION_REDIS_MODE=cluster) is a Redis Cluster: reads go through
// go-redis's ClusterClient, which follows MOVED and ASK itself. Writes need WAIT on the
// very connection that wrote, which a cluster pipeline cannot promise (WAIT has no key,
// so it would go to any shard), so clusterWriter routes them: the primary that holds the
// key's slot gets the script and WAIT in one pipeline; on MOVED the next try goes where
// the reply says (and the slot map is reloaded), on ASK to the importing server with
// ASKING first. Errors that prove the script did not run (redirects, CLUSTERDOWN,
// TRYAGAIN, a refused dial) are retried until the request's deadline; any other error
// is the caller's, since a bump must not be applied twice behind its back.

func redisClusterOptions(c Config, readTimeout time.Duration) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:           c.ClusterNodes,
		Username:        c.RedisUsername,
		Password:        c.RedisPassword,
		ClientName:      "session-app",
		DialTimeout:     time.Second,
		DialerRetries:   1,
		ReadTimeout:     readTimeout,
		WriteTimeout:    time.Second,
		PoolTimeout:     readTimeout,
		MaxRetries:      2,
		MaxRedirects:    8,
		MinRetryBackoff: 50 * time.Millisecond,
		MaxRetryBackoff: 500 * time.Millisecond,
		ConnMaxIdleTime: time.Minute,
		// Honour the request's deadline too, not only the socket timeouts.
		ContextTimeoutEnabled: true,
	}
}

type clusterWriter struct {
	cc *redis.ClusterClient
	// byAddr are clients for redirect targets the slot map does not show yet (ASK).
	mu     sync.Mutex
	byAddr map[string]*redis.Client
}

func newClusterWriter(cc *redis.ClusterClient) *clusterWriter {
	return &clusterWriter{cc: cc, byAddr: map[string]*redis.Client{}}
}

func (w *clusterWriter) node(addr string) *redis.Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.byAddr[addr]; ok {
		return c
	}
	o := w.cc.Options()
	c := redis.NewClient(&redis.Options{
		Addr: addr, Username: o.Username, Password: o.Password, ClientName: o.ClientName,
		DialTimeout: o.DialTimeout, DialerRetries: 1, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolTimeout: o.PoolTimeout, MaxRetries: -1, ConnMaxIdleTime: o.ConnMaxIdleTime, ContextTimeoutEnabled: true,
	})
	w.byAddr[addr] = c
	return c
}

func (w *clusterWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.byAddr {
		_ = c.Close()
	}
	w.byAddr = map[string]*redis.Client{}
}

func (w *clusterWriter) write(ctx context.Context, s *redisStore, script string, keys []string, args ...any) (*redis.Cmd, error) {
	var target redis.Cmdable
	asking := false
	backoff := 50 * time.Millisecond
	for try := 0; ; try++ {
		if target == nil {
			c, err := w.cc.MasterForKey(ctx, keys[0])
			if err != nil {
				if !w.wait(ctx, &backoff) {
					return nil, fmt.Errorf("cluster: primary for %s: %w", keys[0], err)
				}
				continue
			}
			target = c
		}
		eval, err := s.pipeWrite(ctx, target, asking, script, keys, args...)
		if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, ErrNotReplicated) {
			return eval, err
		}
		if addr, ok := redis.IsMovedError(err); ok {
			w.cc.ReloadState(ctx)
			target, asking = w.node(addr), false
			continue
		}
		if addr, ok := redis.IsAskError(err); ok {
			target, asking = w.node(addr), true
			continue
		}
		if !notApplied(err) || !w.wait(ctx, &backoff) {
			return eval, err
		}
		// The shard's primary may have changed: ask the slot map again.
		w.cc.ReloadState(ctx)
		target, asking = nil, false
	}
}

// wait sleeps before another try, unless the request's deadline comes first.
func (w *clusterWriter) wait(ctx context.Context, backoff *time.Duration) bool {
	d := *backoff
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d+100*time.Millisecond {
		return false
	}
	*backoff = min(2**backoff, 200*time.Millisecond)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// notApplied: the error proves the server never ran the script.
func notApplied(err error) bool {
	if redis.IsClusterDownError(err) || redis.IsTryAgainError(err) || redis.IsLoadingError(err) ||
		redis.IsMasterDownError(err) || redis.IsReadOnlyError(err) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return strings.Contains(err.Error(), "connection refused")
}

// ready: some primary of the cluster answers PING.
func (w *clusterWriter) ready(ctx context.Context) error {
	var ok atomic.Int32
	var firstErr atomic.Value
	err := w.cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if err := c.Ping(ctx).Err(); err != nil {
			firstErr.CompareAndSwap(nil, err)
			return nil
		}
		ok.Add(1)
		return nil
	})
	switch {
	case ok.Load() > 0:
		return nil
	case err != nil:
		return err
	case firstErr.Load() != nil:
		return firstErr.Load().(error)
	default:
		return errors.New("cluster: no primary known")
	}
}
