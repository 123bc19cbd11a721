//go:build datapath

package datapath

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionops/session-operator/internal/rediscluster"
)

// The sharded store's benchmark (make bench-datapath): the same session writes and reads
// through the reference app in cluster mode, on a cluster of 1 shard and one of 3 (a
// primary and a replica each), both up at once on the same machine and measured in
// alternation, beside redis-benchmark --cluster SET on each.

type shardedBenchSide struct {
	Shards   int            `json:"shards"`
	Servers  int            `json:"servers"`
	AppWrite latencySummary `json:"app_session_write"`
	AppRead  latencySummary `json:"app_session_read"`
	RedisSet latencySummary `json:"redis_benchmark_cluster_set"`
}

type shardedBenchRound struct {
	Sides []shardedBenchSide `json:"sides"` // 1 shard, then 3
}

type shardedBenchResults struct {
	Started      time.Time `json:"started"`
	Machine      string    `json:"machine"`
	RedisVersion string    `json:"redis_version"`
	Sessions     int       `json:"sessions"`
	Clients      int       `json:"clients"`
	AppInstances int       `json:"app_instances"`
	PadBytes     int       `json:"session_pad_bytes"`
	Rounds       int       `json:"rounds"`
	LoadBefore   string    `json:"load_average_before"`
	LoadAfter    string    `json:"load_average_after"`
	// Median is, per side and figure, the median over the rounds.
	Median shardedBenchRound   `json:"median"`
	All    []shardedBenchRound `json:"all_rounds"`
}

func TestBenchSharded(t *testing.T) {
	preflight(t)
	res := &shardedBenchResults{Started: time.Now().UTC(), Sessions: benchSessions, Clients: benchClients,
		AppInstances: benchAppInstance, PadBytes: benchPadBytes, Rounds: benchRounds, LoadBefore: loadAverage()}
	res.Machine = fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	res.RedisVersion = redisVersion()

	type side struct {
		shards int
		s      *shardedStore
		l      *ledger
		ids    []string
	}
	var sides []*side
	appBinary := ""
	for _, shards := range []int{1, 3} {
		s := newShardedStore(t, 3*time.Second)
		s.appBinary = appBinary
		for range shards * shardedPerShard {
			s.addServer()
		}
		s.reconcile(rediscluster.Spec{Nodes: s.nodes(len(s.servers)), Shards: shards, PerShard: shardedPerShard}, 200*time.Millisecond, 60*time.Second)
		s.startApps(benchAppInstance, s.nodes(len(s.servers)), "SESSION_PAD_BYTES="+strconv.Itoa(benchPadBytes))
		appBinary = s.appBinary
		l := newLedger()
		must(t, createSessions(context.Background(), l, s.appURLs(), benchSessions, benchClients))
		sides = append(sides, &side{shards: shards, s: s, l: l, ids: l.ids()})
	}
	for _, sd := range sides {
		runLoad(sd.l, sd.ids, sd.s.appURLs(), "bump", benchClients, 2*time.Second)
	}
	for range benchRounds {
		var r shardedBenchRound
		for _, sd := range sides {
			r.Sides = append(r.Sides, shardedBenchSide{Shards: sd.shards, Servers: len(sd.s.servers)})
		}
		for i, sd := range sides {
			r.Sides[i].AppWrite = runLoad(sd.l, sd.ids, sd.s.appURLs(), "bump", benchClients, benchDuration)
		}
		for i, sd := range sides {
			r.Sides[i].AppRead = runLoad(sd.l, sd.ids, sd.s.appURLs(), "read", benchClients, benchDuration)
		}
		for i, sd := range sides {
			r.Sides[i].RedisSet = clusterBenchmark(t, sd.s)
		}
		res.All = append(res.All, r)
	}
	res.LoadAfter = loadAverage()
	for _, sd := range sides {
		if _, lost := sd.l.counts(); lost > 0 {
			t.Errorf("%d shards: %d acknowledged writes lost during the benchmark", sd.shards, lost)
		}
	}
	res.Median = medianRound(res.All)

	outDir := resultsDir(t)
	raw, _ := json.MarshalIndent(res, "", "  ")
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath-sharded.json"), append(raw, '\n'), 0o644))
	section := shardedBenchMarkdown(res)
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath-sharded.md"), []byte(section), 0o644))
	if doc := os.Getenv("DATAPATH_BENCH_DOC"); doc != "" {
		must(t, replaceMarkedSection(doc, shardedSectionBegin, shardedSectionEnd, section))
	}
	var b strings.Builder
	b.WriteString("bench-datapath sharded:")
	for _, sd := range res.Median.Sides {
		fmt.Fprintf(&b, " | %d shard(s): app write %.0f/s p99 %.2fms, app read %.0f/s p99 %.2fms, cluster SET %.0f/s p99 %.3fms",
			sd.Shards, sd.AppWrite.PerSecond, sd.AppWrite.P99Millis, sd.AppRead.PerSecond, sd.AppRead.P99Millis, sd.RedisSet.PerSecond, sd.RedisSet.P99Millis)
	}
	b.WriteString("\n")
	fmt.Print(b.String())
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath-sharded.summary"), []byte(b.String()), 0o644))
}

// medianRound takes each figure's median over the rounds, side by side.
func medianRound(all []shardedBenchRound) shardedBenchRound {
	var out shardedBenchRound
	if len(all) == 0 {
		return out
	}
	med := func(get func(r shardedBenchRound) latencySummary) latencySummary {
		xs := make([]latencySummary, len(all))
		for i, r := range all {
			xs[i] = get(r)
		}
		sort.Slice(xs, func(i, j int) bool { return xs[i].PerSecond < xs[j].PerSecond })
		return xs[len(xs)/2]
	}
	for i := range all[0].Sides {
		out.Sides = append(out.Sides, shardedBenchSide{
			Shards: all[0].Sides[i].Shards, Servers: all[0].Sides[i].Servers,
			AppWrite: med(func(r shardedBenchRound) latencySummary { return r.Sides[i].AppWrite }),
			AppRead:  med(func(r shardedBenchRound) latencySummary { return r.Sides[i].AppRead }),
			RedisSet: med(func(r shardedBenchRound) latencySummary { return r.Sides[i].RedisSet }),
		})
	}
	return out
}

// clusterBenchmark runs redis-benchmark --cluster SET (session-sized values) on the store.
func clusterBenchmark(t *testing.T, s *shardedStore) latencySummary {
	t.Helper()
	first := s.servers[0]
	for _, srv := range s.servers {
		if info, err := s.role(srv); err == nil && info["role"] == "master" {
			first = srv
			break
		}
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(first.port), "--user", s.operator.Username, "-a", s.operator.Password}
	if len(s.servers) > shardedPerShard {
		// --cluster refuses a cluster of one primary; there the primary is the whole store.
		args = append(args, "--cluster")
	}
	args = append(args, "-c", strconv.Itoa(benchClients), "-n", strconv.Itoa(benchRedisReqs), "-d", strconv.Itoa(benchValueBytes),
		"-r", "100000", "-t", "set", "--csv")
	out, err := execCommand("redis-benchmark", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark --cluster: %v\n%s", err, strings.ReplaceAll(string(out), s.operator.Password, "<redacted>"))
	}
	recs, err := csv.NewReader(strings.NewReader(lastCSV(string(out)))).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("redis-benchmark output %q: %v", out, err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	num := func(k string) float64 {
		i, ok := col[k]
		if !ok || i >= len(recs[1]) {
			return 0
		}
		v, _ := strconv.ParseFloat(recs[1][i], 64)
		return v
	}
	sum := latencySummary{Requests: benchRedisReqs, OK: benchRedisReqs, PerSecond: num("rps"),
		P50Millis: num("p50_latency_ms"), P99Millis: num("p99_latency_ms"), MeanMillis: num("avg_latency_ms")}
	if sum.PerSecond == 0 {
		t.Fatalf("redis-benchmark --cluster output without figures:\n%s", out)
	}
	sum.Seconds = float64(benchRedisReqs) / sum.PerSecond
	// Its keys (key:NNNNNN) carry no TTL: do not leave them behind.
	for _, srv := range s.servers {
		c := s.client(srv)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, "key:*", 1000).Result()
			if err != nil {
				break
			}
			for _, k := range keys {
				c.Del(ctx, k)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		cancel()
		c.Close()
	}
	return sum
}

// lastCSV drops the lines redis-benchmark --cluster prints before its CSV header.
func lastCSV(out string) string {
	if i := strings.Index(out, "\"test\""); i >= 0 {
		return out[i:]
	}
	return out
}

const (
	shardedSectionBegin = "<!-- sharded data-path benchmark: begin (written by make bench-datapath) -->"
	shardedSectionEnd   = "<!-- sharded data-path benchmark: end -->"
)

func shardedBenchMarkdown(r *shardedBenchResults) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("%s", shardedSectionBegin)
	w("## Sharded store (Redis Cluster): 1 shard beside 3")
	w("")
	w("Session writes (Lua bump + `WAIT 1`) and reads through the reference app in cluster mode")
	w("(`SESSION_REDIS_MODE=cluster`, %d instances per store, sessions of about 1 KB), on a", r.AppInstances)
	w("Redis Cluster of 1 shard (%d servers) and one of 3 shards (%d servers), a primary and", shardedPerShard, 3*shardedPerShard)
	w("%d replicas per shard, made by `internal/rediscluster` and run as local processes by", shardedPerShard-1)
	w("`test/datapath`. Both stores run at once on the same machine and are measured in")
	w("alternation: %d clients, %d sessions per store, %d rounds of %s writes then %s reads,", r.Clients, r.Sessions, r.Rounds, benchDuration, benchDuration)
	w("then `redis-benchmark` SET (%d requests, %d-byte random keys, `--cluster` on 3 shards; on", benchRedisReqs, benchValueBytes)
	w("1 shard plainly on its primary, as `--cluster` refuses one node) on each; each figure")
	w("is the median over the rounds. Reproduce with `make bench-datapath`; every round is in")
	w("`bin/results/bench-datapath-sharded.json`.")
	w("")
	w("| | 1 shard: req/s | p50 ms | p99 ms | 3 shards: req/s | p50 ms | p99 ms |")
	w("|---|---:|---:|---:|---:|---:|---:|")
	if len(r.Median.Sides) == 2 {
		a, c := r.Median.Sides[0], r.Median.Sides[1]
		row := func(name string, x, y latencySummary) {
			w("| %s | %.0f | %.3f | %.3f | %.0f | %.3f | %.3f |", name, x.PerSecond, x.P50Millis, x.P99Millis, y.PerSecond, y.P50Millis, y.P99Millis)
		}
		row("session write via the app", a.AppWrite, c.AppWrite)
		row("session read via the app", a.AppRead, c.AppRead)
		row("`redis-benchmark` SET", a.RedisSet, c.RedisSet)
	}
	w("")
	w("Measured %s on %s, Redis %s; load average %s before, %s after.", r.Started.Format("2006-01-02"), r.Machine, r.RedisVersion, r.LoadBefore, r.LoadAfter)
	w("Every server, app and client shares this machine's cores, so 3 shards cannot show the")
	w("capacity three machines would add: on separate nodes each shard's primary takes only")
	w("its third of the writes and holds a third of the sessions.")
	w("%s", shardedSectionEnd)
	return b.String()
}

// replaceMarkedSection puts section into the Markdown file at path between begin and end
// markers, in place of an earlier one, else at the end.
func replaceMarkedSection(path, begin, end, section string) error {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		raw, err = []byte("# Benchmarks\n"), nil
	}
	if err != nil {
		return err
	}
	s := string(raw)
	if i := strings.Index(s, begin); i >= 0 {
		if j := strings.Index(s[i:], end); j >= 0 {
			e := i + j + len(end)
			if e < len(s) && s[e] == '\n' {
				e++
			}
			return os.WriteFile(path, []byte(s[:i]+section+s[e:]), 0o644)
		}
	}
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return os.WriteFile(path, []byte(s+"\n"+section), 0o644)
}
