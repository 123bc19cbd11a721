// Command capture records what real redis-sentinel processes answer to SENTINEL MASTER and
// SENTINEL REPLICAS while a store goes through the states assessHealth must tell apart:
// healthy, primary frozen (SIGSTOP), failed over with the old primary still frozen, the old
// primary resumed (SIGCONT) and still a master, converted back to a replica, and every
// server gone. It writes internal/store/testdata/sentinel-replies.json (the fixtures of health_test.go).
//
//	go run ./internal/store/testdata/capture   # from the repository root; needs redis-server and redis-sentinel
//
// Servers listen on 127.0.1.1-3, Sentinels on 127.0.2.1-3 (loopback, no /etc/hosts edit),
// down-after 2 s, quorum 2.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	master    = "cap"
	redisPort = "17001"
	sentPort  = "27001"
	downAfter = 2000
)

var (
	servers   = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"}
	sentinels = []string{"127.0.2.1", "127.0.2.2", "127.0.2.3"}
)

// Snapshot is one moment: the primary the Sentinels were asked about, and each answering
// Sentinel's SENTINEL MASTER and SENTINEL REPLICAS replies.
type Snapshot struct {
	Note     string                `json:"note"`
	Primary  string                `json:"primary"`
	Masters  []map[string]string   `json:"masters"`
	Replicas [][]map[string]string `json:"replicas"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "sentinel-capture")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGCONT)
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	start := func(bin, conf string) (*exec.Cmd, error) {
		c := exec.Command(bin, conf)
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, c)
		return c, nil
	}
	redisProc := map[string]*exec.Cmd{}
	for i, h := range servers {
		conf := filepath.Join(dir, fmt.Sprintf("redis%d.conf", i))
		body := fmt.Sprintf("bind %s\nport %s\ndir %s\nsave \"\"\nappendonly no\ndbfilename r%d.rdb\nreplica-announce-ip %s\n", h, redisPort, dir, i, h)
		if i > 0 {
			body += fmt.Sprintf("replicaof %s %s\n", servers[0], redisPort)
		}
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		c, err := start("redis-server", conf)
		if err != nil {
			return err
		}
		redisProc[h] = c
	}
	for i, h := range sentinels {
		conf := filepath.Join(dir, fmt.Sprintf("sentinel%d.conf", i))
		body := fmt.Sprintf("bind %s\nport %s\ndir %s\nsentinel announce-ip %s\nsentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 10000\n",
			h, sentPort, dir, h, master, servers[0], redisPort, master, downAfter, master)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		if _, err := start("redis-sentinel", conf); err != nil {
			return err
		}
	}
	ctx := context.Background()
	clients := make([]*redis.SentinelClient, len(sentinels))
	for i, h := range sentinels {
		clients[i] = redis.NewSentinelClient(&redis.Options{Addr: h + ":" + sentPort, Protocol: 2, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second})
		defer clients[i].Close()
	}
	snap := func(note, primary string) Snapshot {
		s := Snapshot{Note: note, Primary: primary}
		for _, c := range clients {
			m, err := c.Master(ctx, master).Result()
			if err != nil {
				continue
			}
			r, _ := c.Replicas(ctx, master).Result()
			s.Masters = append(s.Masters, m)
			s.Replicas = append(s.Replicas, r)
		}
		return s
	}
	until := func(what string, d time.Duration, cond func(Snapshot) bool, primary string) (Snapshot, error) {
		deadline := time.Now().Add(d)
		for {
			s := snap(what, primary)
			if cond(s) {
				return s, nil
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(s)
				return s, fmt.Errorf("%s: not reached in %s: %s", what, d, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	flags := func(m map[string]string, f string) bool {
		return strings.Contains(","+m["flags"]+",", ","+f+",")
	}
	out := map[string]Snapshot{}

	healthy, err := until("every Sentinel knows the primary, two replicas and two other Sentinels", 60*time.Second, func(s Snapshot) bool {
		if len(s.Masters) != 3 {
			return false
		}
		for i, m := range s.Masters {
			if m["ip"] != servers[0] || m["flags"] != "master" || m["num-other-sentinels"] != "2" || len(s.Replicas[i]) != 2 {
				return false
			}
			for _, r := range s.Replicas[i] {
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return false
				}
			}
		}
		return true
	}, servers[0])
	if err != nil {
		return err
	}
	out["healthy"] = healthy

	old := servers[0]
	_ = redisProc[old].Process.Signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	time.Sleep(1500 * time.Millisecond)
	out["frozen_before_down_after"] = snap("primary frozen (SIGSTOP) 1.5 s ago, down-after 2 s", old)
	if out["frozen_sdown"], err = until("primary frozen, every Sentinel flags it s_down", 10*time.Second, func(s Snapshot) bool {
		n := 0
		for _, m := range s.Masters {
			if m["ip"] == old && flags(m, "s_down") {
				n++
			}
		}
		return n == 3
	}, old); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "s_down on every Sentinel %.1f s after SIGSTOP\n", time.Since(stoppedAt).Seconds())

	var promoted string
	if out["failed_over_old_frozen"], err = until("failed over, every Sentinel names the new primary, the old one frozen", 60*time.Second, func(s Snapshot) bool {
		if len(s.Masters) != 3 {
			return false
		}
		for _, m := range s.Masters {
			if m["ip"] == old || m["flags"] != "master" {
				return false
			}
			promoted = m["ip"]
		}
		for _, m := range s.Masters {
			if m["ip"] != promoted {
				return false
			}
		}
		return true
	}, ""); err != nil {
		return err
	}
	fo := out["failed_over_old_frozen"]
	fo.Primary = promoted
	out["failed_over_old_frozen"] = fo

	_ = redisProc[old].Process.Signal(syscall.SIGCONT)
	if out["resumed_two_masters"], err = until("old primary resumed (SIGCONT), still a master", 20*time.Second, func(s Snapshot) bool {
		for _, rs := range s.Replicas {
			for _, r := range rs {
				if r["ip"] == old && r["role-reported"] == "master" && !flags(r, "s_down") {
					return true
				}
			}
		}
		return false
	}, promoted); err != nil {
		return err
	}
	if out["converted"], err = until("old primary converted to a replica of the new one", 60*time.Second, func(s Snapshot) bool {
		if len(s.Masters) != 3 {
			return false
		}
		for _, rs := range s.Replicas {
			for _, r := range rs {
				if r["ip"] == old && (r["role-reported"] != "slave" || r["master-link-status"] != "ok" || r["flags"] != "slave") {
					return false
				}
			}
		}
		return true
	}, promoted); err != nil {
		return err
	}

	for _, h := range servers {
		_ = redisProc[h].Process.Kill()
	}
	if out["all_servers_gone"], err = until("every server killed, every Sentinel flags the primary down", 20*time.Second, func(s Snapshot) bool {
		n := 0
		for _, m := range s.Masters {
			if flags(m, "s_down") && flags(m, "disconnected") {
				n++
			}
		}
		return n == 3
	}, promoted); err != nil {
		return err
	}

	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile("internal/store/testdata/sentinel-replies.json", append(b, '\n'), 0o644)
}
