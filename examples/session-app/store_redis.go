package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps each session as one Redis hash, session:<id>, with fields
// counter, created and (optionally) pad, expiring after the session TTL.
//
// Writes are Lua scripts, so a create or a bump is one atomic step on the
// primary, and each script is pipelined with WAIT in the same round trip:
// WAIT blocks until the replicas have acknowledged every earlier write on the
// same connection, which includes the script just sent. Fewer acks than
// SESSION_REDIS_WAIT_REPLICAS and the write is reported as failed. (WAIT must
// not be put inside MULTI: there Redis answers at once without blocking.)
type redisStore struct {
	rdb          redis.UniversalClient
	ttl          time.Duration
	waitReplicas int
	waitTimeout  time.Duration
	pad          string
	opTimeout    time.Duration
	cluster      *clusterWriter // set when rdb is a ClusterClient
}

const redisKeyPrefix = "session:"

// createScript: KEYS[1]=key ARGV[1]=ttl ms ARGV[2]=created unix ms ARGV[3]=pad.
const createScript = `
redis.call('HSET', KEYS[1], 'counter', 0, 'created', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'pad', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0`

// incrScript: KEYS[1]=key ARGV[1]=ttl ms. Returns the new counter, or nil
// when the session does not exist (so an unknown id never creates a key).
const incrScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local c = redis.call('HINCRBY', KEYS[1], 'counter', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return c`

// newRedisClient builds the client the wiring asks for: a Sentinel-aware
// FailoverClient when sentinels are given, else a plain client on the primary
// Service address. Timeouts are short and retries few, so that during a
// failover a request fails within a few seconds and the next one dials the
// primary Sentinel names now, instead of queueing behind a stuck pool.
func newRedisClient(c Config) redis.UniversalClient {
	readTimeout := 2 * time.Second
	if c.WaitReplicas > 0 && c.WaitTimeout+time.Second > readTimeout {
		// WAIT blocks server-side for up to WaitTimeout; the socket read must outlast it.
		readTimeout = c.WaitTimeout + time.Second
	}
	if len(c.ClusterNodes) > 0 {
		return redis.NewClusterClient(redisClusterOptions(c, readTimeout))
	}
	if len(c.SentinelAddrs) > 0 {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.SentinelMaster,
			SentinelAddrs:    c.SentinelAddrs,
			SentinelUsername: c.RedisUsername,
			SentinelPassword: c.RedisPassword,
			Username:         c.RedisUsername,
			Password:         c.RedisPassword,
			ClientName:       "session-app",
			DialTimeout:      time.Second,
			DialerRetries:    1, // each dial asks Sentinel afresh; more tries only delay the error
			ReadTimeout:      readTimeout,
			WriteTimeout:     time.Second,
			PoolTimeout:      readTimeout,
			MaxRetries:       2,
			MinRetryBackoff:  50 * time.Millisecond,
			MaxRetryBackoff:  500 * time.Millisecond,
			ConnMaxIdleTime:  time.Minute,
			// Honour the request's deadline too, not only the socket timeouts.
			ContextTimeoutEnabled: true,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:                  c.RedisAddr,
		Username:              c.RedisUsername,
		Password:              c.RedisPassword,
		ClientName:            "session-app",
		DialTimeout:           time.Second,
		DialerRetries:         1,
		ReadTimeout:           readTimeout,
		WriteTimeout:          time.Second,
		PoolTimeout:           readTimeout,
		MaxRetries:            2,
		MinRetryBackoff:       50 * time.Millisecond,
		MaxRetryBackoff:       500 * time.Millisecond,
		ConnMaxIdleTime:       time.Minute,
		ContextTimeoutEnabled: true,
	})
}

func newRedisStore(c Config, rdb redis.UniversalClient) *redisStore {
	s := &redisStore{
		rdb:          rdb,
		ttl:          c.TTL,
		waitReplicas: c.WaitReplicas,
		waitTimeout:  c.WaitTimeout,
		pad:          strings.Repeat("x", c.PadBytes),
		opTimeout:    5 * time.Second,
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		s.cluster = newClusterWriter(cc)
	}
	if need := c.WaitTimeout + 3*time.Second; c.WaitReplicas > 0 && need > s.opTimeout {
		s.opTimeout = need
	}
	return s
}

func (s *redisStore) key(id string) string { return redisKeyPrefix + id }

func (s *redisStore) ttlMillis() string { return strconv.FormatInt(s.ttl.Milliseconds(), 10) }

// write runs one write script and, when configured, WAIT in the same pipeline.
//
// A write refused with READONLY reached a primary that has just become a replica: a
// switchover demotes the old primary and unpauses the writes it held, and the client
// learns the new primary from Sentinel's +switch-master a moment later. The script did
// not run, so sending it again is safe; it is sent again, backing off, until the
// operation's deadline, instead of failing the user's request.
func (s *redisStore) write(ctx context.Context, script string, keys []string, args ...any) (*redis.Cmd, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	backoff := readOnlyBackoff
	for {
		var cmd *redis.Cmd
		var err error
		if s.cluster != nil {
			cmd, err = s.cluster.write(ctx, s, script, keys, args...)
		} else {
			cmd, err = s.pipeWrite(ctx, s.rdb, false, script, keys, args...)
		}
		if !redis.IsReadOnlyError(err) {
			return cmd, err
		}
		select {
		case <-ctx.Done():
			return cmd, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 800*time.Millisecond)
	}
}

// readOnlyBackoff is the first wait before a write refused with READONLY is sent again.
const readOnlyBackoff = 100 * time.Millisecond

// pipeWrite sends the script and WAIT on one connection of c; asking prefixes ASKING (the
// slot is being imported by this server).
func (s *redisStore) pipeWrite(ctx context.Context, c redis.Cmdable, asking bool, script string, keys []string, args ...any) (*redis.Cmd, error) {
	pipe := c.Pipeline()
	if asking {
		pipe.Do(ctx, "asking")
	}
	eval := pipe.Eval(ctx, script, keys, args...)
	var wait *redis.Cmd
	if s.waitReplicas > 0 {
		// Pipeliner has no Wait helper; the raw command is the same WAIT.
		wait = pipe.Do(ctx, "wait", s.waitReplicas, s.waitTimeout.Milliseconds())
	}
	_, _ = pipe.Exec(ctx) // errors are inspected per command below
	if err := eval.Err(); err != nil {
		return eval, err
	}
	if wait != nil {
		n, err := wait.Int64()
		if err != nil {
			return eval, fmt.Errorf("WAIT: %w", err)
		}
		if n < int64(s.waitReplicas) {
			return eval, fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, n, s.waitReplicas, s.waitTimeout)
		}
	}
	return eval, nil
}

func (s *redisStore) Create(ctx context.Context, id string) (Session, error) {
	created := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if _, err := s.write(ctx, createScript, []string{s.key(id)}, s.ttlMillis(), created, s.pad); err != nil {
		return Session{}, err
	}
	return Session{ID: id}, nil
}

func (s *redisStore) Incr(ctx context.Context, id string) (Session, error) {
	eval, err := s.write(ctx, incrScript, []string{s.key(id)}, s.ttlMillis())
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, err
	}
	n, err := eval.Int64()
	if err != nil {
		return Session{}, fmt.Errorf("incr script reply: %w", err)
	}
	return Session{ID: id, Counter: n}, nil
}

func (s *redisStore) Get(ctx context.Context, id string) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	v, err := s.rdb.HGet(ctx, s.key(id), "counter").Result()
	if errors.Is(err, redis.Nil) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return Session{}, fmt.Errorf("session %s: bad counter %q", id, v)
	}
	return Session{ID: id, Counter: n}, nil
}

// Ready pings the primary through the same client the handlers use; for the
// FailoverClient that means Sentinel answered and named a reachable primary.
// In cluster mode it is ready when any shard's primary answers: one shard failing over
// must not take every app pod out of its Service (the other shards still serve).
func (s *redisStore) Ready(ctx context.Context) error {
	if s.cluster != nil {
		return s.cluster.ready(ctx)
	}
	return s.rdb.Ping(ctx).Err()
}

func (s *redisStore) Close() error {
	if s.cluster != nil {
		s.cluster.close()
	}
	return s.rdb.Close()
}

// redisLogger routes go-redis's own log lines (one per failed dial during a
// failover) through a rate limit, so an outage under load stays readable.
type redisLogger struct{ rl rateLimitedLog }

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	if !strings.HasPrefix(format, "redis:") {
		format = "redis: " + format
	}
	if strings.HasPrefix(format, "redis: sentinel:") {
		log.Printf(format, v...) // rare and worth seeing: primary changes
		return
	}
	l.rl.printf(format, v...)
}

func init() { redis.SetLogger(&redisLogger{}) }
