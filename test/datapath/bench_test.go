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
	"sync"
	"testing"
	"time"

	"github.com/sessionops/session-operator/internal/render"
)

// The benchmark's sizes. Client concurrency is the same for the app and redis-benchmark.
const (
	benchSessions    = 2000
	benchClients     = 8
	benchRounds      = 3 // each: app writes, SET, app reads, GET, back to back
	benchDuration    = 5 * time.Second
	benchPadBytes    = 1000 // the app's session hash is then about 1 KB
	benchValueBytes  = 1024 // redis-benchmark -d
	benchRedisReqs   = 50000
	benchAppInstance = 2
)

type latencySummary struct {
	Requests   int     `json:"requests"`
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Millis  float64 `json:"p50_ms"`
	P99Millis  float64 `json:"p99_ms"`
	MeanMillis float64 `json:"mean_ms"`
}

type benchResults struct {
	Started      time.Time `json:"started"`
	Machine      string    `json:"machine"`
	RedisVersion string    `json:"redis_version"`
	Primary      string    `json:"primary"`
	Sessions     int       `json:"sessions"`
	Clients      int       `json:"clients"`
	AppInstances int       `json:"app_instances"`
	PadBytes     int       `json:"session_pad_bytes"`
	ValueBytes   int       `json:"redis_benchmark_value_bytes"`
	Rounds       int       `json:"rounds"`
	// Load average (1, 5, 15 min) before and after: the machine may be shared.
	LoadBefore string `json:"load_average_before"`
	LoadAfter  string `json:"load_average_after"`
	// The round whose write-throughput ratio is the median; every round below.
	benchRound
	All []benchRound `json:"all_rounds"`
}

type benchRound struct {
	// App: through the reference app (HTTP, a Lua script per operation, and for writes
	// WAIT 1 for a replica's acknowledgement), spread over the app instances.
	AppWrite latencySummary `json:"app_session_write"`
	AppRead  latencySummary `json:"app_session_read"`
	// Redis: redis-benchmark SET and GET on the same primary, right after the app phase.
	RedisSet latencySummary `json:"redis_benchmark_set"`
	RedisGet latencySummary `json:"redis_benchmark_get"`
	// Ratios: app / redis-benchmark; throughput below 1 and latency above 1 are the
	// price of HTTP, the app and (for writes) the replica acknowledgement.
	Ratios map[string]float64 `json:"ratios"`
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// TestBenchDataPath is the data-path benchmark (make bench-datapath).
func TestBenchDataPath(t *testing.T) {
	res := &benchResults{Started: time.Now().UTC(), Sessions: benchSessions, Clients: benchClients, Rounds: benchRounds,
		AppInstances: benchAppInstance, PadBytes: benchPadBytes, ValueBytes: benchValueBytes, LoadBefore: loadAverage()}
	res.Machine = fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	res.RedisVersion = redisVersion()
	c := newCluster(t)
	c.startStore()
	primary, err := c.sentinelsPrimary()
	must(t, err)
	must(t, c.waitSettled(primary, 60*time.Second))
	res.Primary = shortHost(primary)
	c.addApps(benchAppInstance, "SESSION_PAD_BYTES="+strconv.Itoa(benchPadBytes))
	for _, p := range c.apps {
		c.startApp(p)
	}
	l := newLedger()
	ctx := context.Background()
	must(t, createSessions(ctx, l, c.appURLs(), benchSessions, benchClients))
	ids := l.ids()
	urls := c.appURLs()

	// Warm up the connections, then measure, app and redis-benchmark back to back so
	// that both see the same machine.
	runLoad(l, ids, urls, "bump", benchClients, 2*time.Second)
	p := c.redisPod(primary)
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for i := 0; i < benchRounds; i++ {
		var r benchRound
		r.AppWrite = runLoad(l, ids, urls, "bump", benchClients, benchDuration)
		r.RedisSet = c.redisBenchmark(t, p, "set")
		r.AppRead = runLoad(l, ids, urls, "read", benchClients, benchDuration)
		r.RedisGet = c.redisBenchmark(t, p, "get")
		r.Ratios = map[string]float64{
			"write_throughput": ratio(r.AppWrite.PerSecond, r.RedisSet.PerSecond),
			"read_throughput":  ratio(r.AppRead.PerSecond, r.RedisGet.PerSecond),
			"write_p50":        ratio(r.AppWrite.P50Millis, r.RedisSet.P50Millis),
			"write_p99":        ratio(r.AppWrite.P99Millis, r.RedisSet.P99Millis),
			"read_p50":         ratio(r.AppRead.P50Millis, r.RedisGet.P50Millis),
			"read_p99":         ratio(r.AppRead.P99Millis, r.RedisGet.P99Millis),
		}
		res.All = append(res.All, r)
	}
	res.LoadAfter = loadAverage()
	if _, lost := l.counts(); lost > 0 {
		t.Errorf("%d acknowledged writes lost during the benchmark", lost)
	}
	byRatio := append([]benchRound(nil), res.All...)
	sort.Slice(byRatio, func(i, j int) bool {
		return byRatio[i].Ratios["write_throughput"] < byRatio[j].Ratios["write_throughput"]
	})
	res.benchRound = byRatio[len(byRatio)/2]

	outDir := resultsDir(t)
	raw, _ := json.MarshalIndent(res, "", "  ")
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath.json"), append(raw, '\n'), 0o644))
	section := benchMarkdown(res)
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath.md"), []byte(section), 0o644))
	if doc := os.Getenv("DATAPATH_BENCH_DOC"); doc != "" {
		must(t, replaceSection(doc, section))
	}
	summary := fmt.Sprintf("bench-datapath: app write %.0f/s p50 %.2fms p99 %.2fms | app read %.0f/s p50 %.2fms p99 %.2fms | "+
		"redis SET %.0f/s p50 %.3fms p99 %.3fms | GET %.0f/s p50 %.3fms p99 %.3fms | ratios write %.3f read %.3f (throughput), "+
		"write p50 x%.1f p99 x%.1f, read p50 x%.1f p99 x%.1f (latency)\n",
		res.AppWrite.PerSecond, res.AppWrite.P50Millis, res.AppWrite.P99Millis,
		res.AppRead.PerSecond, res.AppRead.P50Millis, res.AppRead.P99Millis,
		res.RedisSet.PerSecond, res.RedisSet.P50Millis, res.RedisSet.P99Millis,
		res.RedisGet.PerSecond, res.RedisGet.P50Millis, res.RedisGet.P99Millis,
		res.Ratios["write_throughput"], res.Ratios["read_throughput"],
		res.Ratios["write_p50"], res.Ratios["write_p99"], res.Ratios["read_p50"], res.Ratios["read_p99"])
	fmt.Print(summary)
	must(t, os.WriteFile(filepath.Join(outDir, "bench-datapath.summary"), []byte(summary), 0o644))
}

// runLoad sends op requests from clients goroutines for d, each owning a share of the
// sessions and rotating over the instances, and summarizes the successful ones' latency.
func runLoad(l *ledger, ids, urls []string, op string, clients int, d time.Duration) latencySummary {
	cl := newClient(clients, 5*time.Second)
	var mu sync.Mutex
	var lat []time.Duration
	var sum latencySummary
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for k := 0; k < clients; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			var mine []time.Duration
			ok, failed := 0, 0
			for n := 0; time.Now().Before(deadline); n++ {
				id := ids[(k+n*clients)%len(ids)]
				e := do(cl, context.Background(), op, urls[(n+k)%len(urls)], id, k)
				l.record(e)
				if e.OK {
					ok++
					mine = append(mine, e.End.Sub(e.Start))
				} else {
					failed++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			sum.OK += ok
			sum.Failed += failed
			mu.Unlock()
		}(k)
	}
	wg.Wait()
	sum.Seconds = time.Since(start).Seconds()
	sum.Requests = sum.OK + sum.Failed
	sum.PerSecond = float64(sum.OK) / sum.Seconds
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	sum.P50Millis, sum.P99Millis = pct(0.50), pct(0.99)
	var total time.Duration
	for _, x := range lat {
		total += x
	}
	if len(lat) > 0 {
		sum.MeanMillis = float64(total) / float64(len(lat)) / float64(time.Millisecond)
	}
	return sum
}

// redisBenchmark runs redis-benchmark SET and GET with a session-sized value on the pod.
func (c *cluster) redisBenchmark(t *testing.T, p *pod, test string) latencySummary {
	t.Helper()
	args := []string{"-h", p.addr, "-p", strconv.Itoa(render.RedisPort), "--user", render.UserOperator, "-a", harnessInternal.Operator,
		"-c", strconv.Itoa(benchClients), "-n", strconv.Itoa(benchRedisReqs), "-d", strconv.Itoa(benchValueBytes),
		"-t", test, "--csv"}
	cmd := execCommand("redis-benchmark", args...)
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	elapsed := time.Since(start).Seconds()
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("redis-benchmark output %q: %v", out, err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	num := func(r []string, k string) float64 {
		i, ok := col[k]
		if !ok || i >= len(r) {
			return 0
		}
		v, _ := strconv.ParseFloat(r[i], 64)
		return v
	}
	r := recs[1]
	s := latencySummary{Requests: benchRedisReqs, OK: benchRedisReqs, PerSecond: num(r, "rps"),
		P50Millis: num(r, "p50_latency_ms"), P99Millis: num(r, "p99_latency_ms"), MeanMillis: num(r, "avg_latency_ms")}
	if s.PerSecond == 0 {
		t.Fatalf("redis-benchmark output without figures (%.1fs):\n%s", elapsed, out)
	}
	s.Seconds = float64(benchRedisReqs) / s.PerSecond
	// redis-benchmark's key carries no TTL: do not leave it behind.
	rc := c.redisClient(p)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc.Del(ctx, "key:__rand_int__")
	return s
}

const (
	sectionBegin = "<!-- data-path benchmark: begin (written by make bench-datapath) -->"
	sectionEnd   = "<!-- data-path benchmark: end -->"
)

func benchMarkdown(r *benchResults) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("%s", sectionBegin)
	w("## Data path")
	w("")
	w("Session reads and writes through the reference app (`examples/session-app`, %d instances,", r.AppInstances)
	w("sessions of about 1 KB: `SESSION_PAD_BYTES=%d`) beside `redis-benchmark` GET/SET with a", r.PadBytes)
	w("%d-byte value on the same primary, in the same run, on the store the operator renders", r.ValueBytes)
	w("(3 servers, 3 Sentinels, run as local processes by `test/datapath`). %d clients each side;", r.Clients)
	w("%d sessions; %d rounds of app writes (%s), SET (%d requests), app reads, GET, back to", r.Sessions, r.Rounds, benchDuration, benchRedisReqs)
	w("back; the round with the median write ratio is shown. Reproduce with `make bench-datapath`;")
	w("every round is in `bin/results/bench-datapath.json`.")
	w("")
	w("| | requests/s | p50 ms | p99 ms |")
	w("|---|---:|---:|---:|")
	row := func(name string, s latencySummary) {
		w("| %s | %.0f | %.3f | %.3f |", name, s.PerSecond, s.P50Millis, s.P99Millis)
	}
	row("session write via the app (`GET /session`: Lua bump + `WAIT 1`)", r.AppWrite)
	row("session read via the app (`GET /session?read=1`)", r.AppRead)
	row("`redis-benchmark` SET", r.RedisSet)
	row("`redis-benchmark` GET", r.RedisGet)
	w("")
	w("| ratio (app / redis-benchmark) | write vs SET | read vs GET |")
	w("|---|---:|---:|")
	w("| throughput | %.3f | %.3f |", r.Ratios["write_throughput"], r.Ratios["read_throughput"])
	w("| p50 latency | %.1f× | %.1f× |", r.Ratios["write_p50"], r.Ratios["read_p50"])
	w("| p99 latency | %.1f× | %.1f× |", r.Ratios["write_p99"], r.Ratios["read_p99"])
	w("")
	w("Measured %s on %s, Redis %s; load average %s before, %s after.", r.Started.Format("2006-01-02"), r.Machine, r.RedisVersion, r.LoadBefore, r.LoadAfter)
	w("Everything (Redis, Sentinels, apps, load) shares the machine, so the absolute figures")
	w("say more about the machine than about the store; the ratios are the point. A session")
	w("write costs an HTTP round trip, a Lua script and a replica acknowledgement (`WAIT 1`),")
	w("which `redis-benchmark` SET does not wait for.")
	w("%s", sectionEnd)
	return b.String()
}

// replaceSection puts the single-primary section into the Markdown file at path.
func replaceSection(path, section string) error {
	return replaceMarkedSection(path, sectionBegin, sectionEnd, section)
}
