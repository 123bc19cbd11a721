package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelObserver asks Sentinels over the network. Clients are kept per Sentinel address
// and reused across passes; at most Concurrency stores are asked at once, so a thousand
// SessionClusters cannot open a thousand connections in one burst.
type SentinelObserver struct {
	// Timeout bounds one question to one server.
	Timeout time.Duration

	sem chan struct{}

	mu      sync.Mutex
	clients map[string]*redis.SentinelClient
}

// NewSentinelObserver returns an observer asking at most concurrency stores at once.
func NewSentinelObserver(concurrency int, timeout time.Duration) *SentinelObserver {
	return &SentinelObserver{
		Timeout: timeout,
		sem:     make(chan struct{}, max(1, concurrency)),
		clients: map[string]*redis.SentinelClient{},
	}
}

// Observe asks every Sentinel of t for the primary; the answer most Sentinels give wins.
func (o *SentinelObserver) Observe(ctx context.Context, t Target) (Observation, error) {
	select {
	case o.sem <- struct{}{}:
		defer func() { <-o.sem }()
	case <-ctx.Done():
		return Observation{Keys: -1}, ctx.Err()
	}
	obs := Observation{Keys: -1}
	votes := map[string]int{}
	var errs []error
	for _, addr := range t.Sentinels {
		c := o.client(addr, t.Password)
		qctx, cancel := context.WithTimeout(ctx, o.Timeout)
		res, err := c.GetMasterAddrByName(qctx, t.MasterName).Result()
		cancel()
		if err != nil {
			if !errors.Is(err, redis.Nil) {
				errs = append(errs, fmt.Errorf("%s: %w", addr, err))
				continue
			}
			obs.SentinelsReachable++
			continue
		}
		obs.SentinelsReachable++
		if len(res) == 2 {
			votes[net.JoinHostPort(res[0], res[1])]++
		}
	}
	best := 0
	for addr, n := range votes {
		if n > best {
			best = n
			host, _, _ := net.SplitHostPort(addr)
			obs.PrimaryHost = host
		}
	}
	if obs.SentinelsReachable == 0 && len(errs) > 0 {
		return obs, errors.Join(errs...)
	}
	return obs, nil
}

func (o *SentinelObserver) client(addr, password string) *redis.SentinelClient {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := addr + "\x00" + password
	if c, ok := o.clients[key]; ok {
		return c
	}
	c := redis.NewSentinelClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		DialTimeout:  o.Timeout,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		PoolSize:     1,
		MaxRetries:   -1,
	})
	o.clients[key] = c
	return c
}

// Close releases every connection.
func (o *SentinelObserver) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, c := range o.clients {
		_ = c.Close()
		delete(o.clients, k)
	}
	return nil
}
