//go:build datapath

package datapath

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionops/session-operator/internal/render"
)

// The harness's own look at the servers, for checks the observer is not asked about.

func (c *cluster) redisClient(p *pod) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("%s:%d", p.addr, render.RedisPort), Username: render.UserOperator, Password: harnessInternal.Operator, Protocol: 2,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second, MaxRetries: -1,
	})
}

func (c *cluster) sentinelClient(p *pod) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: fmt.Sprintf("%s:%d", p.addr, render.SentinelPort), Username: render.UserOperator, Password: harnessInternal.Operator, Protocol: 2,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second, MaxRetries: -1,
	})
}

func parseInfo(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

func (c *cluster) info(p *pod, sections ...string) (map[string]string, error) {
	r := c.redisClient(p)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := r.Info(ctx, sections...).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

func (c *cluster) dbsize(p *pod) (int64, error) {
	r := c.redisClient(p)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return r.DBSize(ctx).Result()
}

// settled: every server runs with the expected primary and every replica's link is up;
// every Sentinel names that primary, knows every replica as healthy and the other
// Sentinels. Then a failover can happen the way the spec says.
func (c *cluster) settled(primary string) error {
	n := len(c.redis)
	for _, p := range c.redis {
		i, err := c.info(p, "replication")
		if err != nil {
			return fmt.Errorf("%s: %v", p.name, err)
		}
		if p.host == primary {
			if i["role"] != "master" {
				return fmt.Errorf("%s: role %s, want master", p.name, i["role"])
			}
			if i["connected_slaves"] != strconv.Itoa(n-1) {
				return fmt.Errorf("%s: %s replicas connected", p.name, i["connected_slaves"])
			}
			continue
		}
		if i["role"] != "slave" || i["master_host"] != primary || i["master_link_status"] != "up" {
			return fmt.Errorf("%s: role %s master %s link %s", p.name, i["role"], i["master_host"], i["master_link_status"])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range c.sentinels {
		sc := c.sentinelClient(s)
		m, err := sc.Master(ctx, c.names.MasterName()).Result()
		if err != nil {
			sc.Close()
			return fmt.Errorf("%s: %v", s.name, err)
		}
		reps, err := sc.Replicas(ctx, c.names.MasterName()).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("%s: %v", s.name, err)
		}
		if m["ip"] != primary || m["flags"] != "master" {
			return fmt.Errorf("%s: master %s flags %s", s.name, m["ip"], m["flags"])
		}
		if m["num-other-sentinels"] != strconv.Itoa(len(c.sentinels)-1) {
			return fmt.Errorf("%s: knows %s other sentinels", s.name, m["num-other-sentinels"])
		}
		healthy := 0
		for _, r := range reps {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				healthy++
			}
		}
		if healthy != n-1 {
			return fmt.Errorf("%s: %d healthy replicas known", s.name, healthy)
		}
	}
	return nil
}

func (c *cluster) waitSettled(primary string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.settled(primary)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not settled after %s: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sentinelsPrimary is the primary every Sentinel names, or an error when they differ.
func (c *cluster) sentinelsPrimary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out string
	for _, s := range c.sentinels {
		sc := c.sentinelClient(s)
		a, err := sc.GetMasterAddrByName(ctx, c.names.MasterName()).Result()
		sc.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %v", s.name, err)
		}
		if out != "" && a[0] != out {
			return "", fmt.Errorf("sentinels disagree: %s and %s", out, a[0])
		}
		out = a[0]
	}
	return out, nil
}

// clientsNamed counts connections named name on a server or Sentinel.
func clientsNamed(list, name string) int {
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if f == "name="+name {
				n++
			}
		}
	}
	return n
}
