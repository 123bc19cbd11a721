package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Admin takes the planned steps of a rollout on a running store: it reads what each
// server and Sentinel reports, and hands the primary over. The controller and the
// data-path harness use the same code.
type Admin struct {
	// Timeout bounds each command; zero means 2s.
	Timeout time.Duration
	// ClientName names the connections; empty means DefaultClientName.
	ClientName string
	// Dial opens connections; nil dials the address (the scale benchmark maps addresses
	// to its simulated Sentinel, as for the observer).
	Dial DialFunc
}

// Server is what one Redis server reports about replication.
type Server struct {
	Host       string
	Reachable  bool
	Loading    bool
	Role       string // master | slave
	MasterHost string
	LinkUp     bool
	// Offset is master_repl_offset for a primary, slave_repl_offset for a replica.
	Offset int64
	// Replicas are the replicas a primary streams to: host -> acknowledged offset.
	Replicas map[string]int64
}

// SentinelView is what the Sentinels agree on.
type SentinelView struct {
	Reachable int
	// Primary is the host every reachable Sentinel names; empty when they disagree or
	// none answered.
	Primary string
	// Named counts the Sentinels naming each host.
	Named map[string]int
	// FailoverInProgress: some Sentinel reports a failover under way, or the primary
	// subjectively or objectively down.
	FailoverInProgress bool
	Flags              []string
}

func (a *Admin) timeout() time.Duration {
	if a.Timeout > 0 {
		return a.Timeout
	}
	return 2 * time.Second
}

func (a *Admin) client(addr string, t Target) *redis.Client {
	name := a.ClientName
	if name == "" {
		name = DefaultClientName
	}
	return redis.NewClient(&redis.Options{
		Addr: addr, Username: t.Username, Password: t.Password, ClientName: name, Protocol: 2,
		DialTimeout: a.timeout(), ReadTimeout: a.timeout(), WriteTimeout: a.timeout(),
		DialerRetries: 1, PoolSize: 1, MaxRetries: -1, Dialer: a.Dial,
	})
}

// Server reads INFO replication of the server at addr (host:port), as t's user.
func (a *Admin) Server(ctx context.Context, addr string, t Target) Server {
	host, _, _ := net.SplitHostPort(addr)
	s := Server{Host: host}
	c := a.client(addr, t)
	defer c.Close()
	raw, err := c.Info(ctx, "replication", "persistence").Result()
	if err != nil {
		s.Loading = strings.HasPrefix(err.Error(), "LOADING")
		return s
	}
	s.Reachable = true
	f := infoFields(raw)
	s.Loading = f["loading"] == "1"
	s.Role = f["role"]
	s.MasterHost = f["master_host"]
	s.LinkUp = f["master_link_status"] == "up"
	if s.Role == "master" {
		s.Offset, _ = strconv.ParseInt(f["master_repl_offset"], 10, 64)
		s.Replicas = map[string]int64{}
		for k, v := range f {
			if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "state=online") {
				continue
			}
			kv := map[string]string{}
			for _, part := range strings.Split(v, ",") {
				if key, val, ok := strings.Cut(part, "="); ok {
					kv[key] = val
				}
			}
			off, _ := strconv.ParseInt(kv["offset"], 10, 64)
			s.Replicas[kv["ip"]] = off
		}
	} else {
		s.Offset, _ = strconv.ParseInt(f["slave_repl_offset"], 10, 64)
	}
	return s
}

func infoFields(raw string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// Sentinels asks every Sentinel of t what it thinks of the primary.
func (a *Admin) Sentinels(ctx context.Context, t Target) SentinelView {
	v := SentinelView{Named: map[string]int{}}
	// Asked in parallel: a Sentinel that does not answer costs one timeout, not one each.
	answers := make([]map[string]string, len(t.Sentinels))
	var wg sync.WaitGroup
	for i, addr := range t.Sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := a.client(addr, t)
			defer c.Close()
			cmd := redis.NewMapStringStringCmd(ctx, "SENTINEL", "MASTER", t.MasterName)
			if c.Process(ctx, cmd) == nil {
				answers[i] = cmd.Val()
			}
		}()
	}
	wg.Wait()
	for _, fields := range answers {
		if fields == nil {
			continue
		}
		v.Reachable++
		v.Named[fields["ip"]]++
		flags := fields["flags"]
		v.Flags = append(v.Flags, flags)
		for _, f := range strings.Split(flags, ",") {
			switch f {
			case "s_down", "o_down", "failover_in_progress", "promoted":
				v.FailoverInProgress = true
			}
		}
		if fs := fields["failover-state"]; fs != "" && fs != "none" {
			v.FailoverInProgress = true
		}
	}
	if len(v.Named) == 1 {
		for h := range v.Named {
			v.Primary = h
		}
	}
	return v
}

// ErrNotSafe means the store is not in a state where a planned handover may start.
var ErrNotSafe = errors.New("not safe to hand over now")

// Switchover hands the primary (host name) over to one of candidates without losing an
// acknowledged write and without racing a failover: it checks that every reachable
// Sentinel (a majority at least) names primary and reports no failover; pauses writes on
// the primary; waits until the candidates (and every other online replica) have
// everything; keeps other replicas out of the election (replica-priority 0) when
// candidates is not all of them; asks one Sentinel once for the failover; waits for the
// Sentinels to name the new primary; points the old primary at it; unpauses. port is the
// servers' port. It returns the new primary's host.
func (a *Admin) Switchover(ctx context.Context, t Target, primary string, candidates []string, port int, budget time.Duration) (string, error) {
	deadline := time.Now().Add(budget)
	view := a.Sentinels(ctx, t)
	switch {
	case view.Reachable < len(t.Sentinels)/2+1:
		return "", fmt.Errorf("%w: %d of %d Sentinels answer", ErrNotSafe, view.Reachable, len(t.Sentinels))
	case view.FailoverInProgress:
		return "", fmt.Errorf("%w: a Sentinel reports a failover under way (%s)", ErrNotSafe, strings.Join(view.Flags, " "))
	case view.Primary != primary:
		return "", fmt.Errorf("%w: the Sentinels name %v, not %s", ErrNotSafe, view.Named, primary)
	}
	addr := func(h string) string { return net.JoinHostPort(h, strconv.Itoa(port)) }
	p := a.Server(ctx, addr(primary), t)
	if !p.Reachable || p.Role != "master" {
		return "", fmt.Errorf("%w: %s reports role %q", ErrNotSafe, primary, p.Role)
	}
	want := map[string]bool{}
	for _, c := range candidates {
		if _, ok := p.Replicas[c]; ok {
			want[c] = true
		}
	}
	if len(want) == 0 {
		return "", fmt.Errorf("%w: none of %v is an online replica of %s", ErrNotSafe, candidates, primary)
	}

	// Replicas that must not be promoted (they are about to be scaled away) say so, and
	// the Sentinels must have read it (they refresh INFO every 10 s) before the election.
	var excluded []string
	for h := range p.Replicas {
		if !want[h] {
			excluded = append(excluded, h)
		}
	}
	for _, h := range excluded {
		c := a.client(addr(h), t)
		err := c.ConfigSet(ctx, "replica-priority", "0").Err()
		c.Close()
		if err != nil {
			return "", fmt.Errorf("keeping %s out of the election: %w", h, err)
		}
	}
	defer func() {
		for _, h := range excluded {
			c := a.client(addr(h), t)
			_ = c.ConfigSet(context.WithoutCancel(ctx), "replica-priority", "100").Err()
			c.Close()
		}
	}()
	if len(excluded) > 0 {
		if err := a.waitExcluded(ctx, t, excluded, deadline); err != nil {
			return "", err
		}
	}

	pc := a.client(addr(primary), t)
	defer pc.Close()
	pauseMs := max(int64(time.Until(deadline)/time.Millisecond), 1000)
	if err := pc.Do(ctx, "CLIENT", "PAUSE", pauseMs, "WRITE").Err(); err != nil {
		return "", fmt.Errorf("pausing writes on %s: %w", primary, err)
	}
	defer pc.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE")

	// Every online replica at the primary's offset: nothing acknowledged is left behind.
	for {
		p = a.Server(ctx, addr(primary), t)
		behind := 0
		for _, off := range p.Replicas {
			if off != p.Offset {
				behind++
			}
		}
		if p.Reachable && behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replicas of %s did not catch up within %s", primary, budget)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One request, to one Sentinel: asking several (or again) is how two replicas got
	// promoted at once.
	asked := false
	var lastErr error
	for _, s := range t.Sentinels {
		c := a.client(s, t)
		err := c.Do(ctx, "SENTINEL", "FAILOVER", t.MasterName).Err()
		c.Close()
		if err == nil {
			asked = true
			break
		}
		lastErr = err
		if strings.Contains(err.Error(), "INPROG") || strings.Contains(err.Error(), "NOGOODSLAVE") {
			return "", fmt.Errorf("%w: %s: %v", ErrNotSafe, s, err)
		}
	}
	if !asked {
		return "", fmt.Errorf("asking for the failover: %w", lastErr)
	}
	var newPrimary string
	for {
		v := a.Sentinels(ctx, t)
		for h, n := range v.Named {
			if h != primary && h != "" && n >= len(t.Sentinels)/2+1 {
				newPrimary = h
			}
		}
		if newPrimary != "" {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the Sentinels named no new primary within %s (%v)", budget, v.Named)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old primary follows at once rather than when a Sentinel gets round to it; the
	// paused writers then get READONLY and go to the new primary.
	if err := pc.Do(ctx, "REPLICAOF", newPrimary, strconv.Itoa(port)).Err(); err != nil {
		return newPrimary, fmt.Errorf("pointing %s at %s: %w", primary, newPrimary, err)
	}
	return newPrimary, nil
}

// waitExcluded waits until every Sentinel sees priority 0 on the excluded replicas.
func (a *Admin) waitExcluded(ctx context.Context, t Target, excluded []string, deadline time.Time) error {
	for {
		ok := true
		for _, s := range t.Sentinels {
			c := a.client(s, t)
			cmd := redis.NewSliceCmd(ctx, "SENTINEL", "REPLICAS", t.MasterName)
			err := c.Process(ctx, cmd)
			c.Close()
			if err != nil {
				continue
			}
			seen := map[string]string{}
			for _, r := range cmd.Val() {
				kv := flatMap(r)
				seen[kv["ip"]] = kv["slave-priority"]
			}
			for _, h := range excluded {
				if seen[h] != "0" {
					ok = false
				}
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Sentinels did not see replicas %v leave the election in time", excluded)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// flatMap turns a RESP2 flat name/value array into a map.
func flatMap(v any) map[string]string {
	out := map[string]string{}
	arr, _ := v.([]any)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		out[k] = val
	}
	return out
}
