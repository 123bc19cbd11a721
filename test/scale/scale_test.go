//go:build scale

// Package scale measures the operator managing a fleet of SessionClusters: the real
// manager, built by internal/manager exactly as main.go builds it, runs as its own process
// against a real kube-apiserver and etcd (envtest), so its memory and API traffic are its
// own. envtest runs no pods, so a fixed observer stands in for the Sentinels.
//
//	make bench-scale                    # N=1000
//	SCALE_N=200 SCALE_IDLE=10s make bench-scale
package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/controllers"
	"github.com/sessionops/session-operator/internal/manager"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
	"github.com/sessionops/session-operator/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv("SCALE_ROLE") == "manager" {
		os.Exit(runManager())
	}
	os.Exit(m.Run())
}

// primaryIsFirst answers for any store that its first server is the primary.
type primaryIsFirst struct{}

func (primaryIsFirst) Observe(_ context.Context, t store.Target) (store.Observation, error) {
	n := render.Names{Cluster: t.Cluster.Name, Namespace: t.Cluster.Namespace, Domain: render.DefaultClusterDomain}
	return store.Observation{PrimaryHost: n.StoreHosts(1)[0], SentinelsReachable: len(t.Sentinels), Keys: 0,
		Health: store.Health{Agreeing: len(t.Sentinels)}}, nil
}

// runManager is the manager process: the operator's own assembly with a fixed observer.
func runManager() int {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.InfoLevel)))
	manager.TuneGC(manager.DefaultGCPercent)
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	conc, _ := strconv.Atoi(os.Getenv("SCALE_CONCURRENCY"))
	qps := envInt("SCALE_QPS", manager.DefaultQPS)
	mgr, err := manager.New(cfg, manager.Options{
		MetricsAddr: os.Getenv("SCALE_METRICS"), ProbeAddr: "0", PprofAddr: os.Getenv("SCALE_PPROF"),
		MaxConcurrentReconciles: conc, QPS: float32(qps), Burst: 2 * qps, Observer: primaryIsFirst{},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type proc struct {
	cmd            *exec.Cmd
	metrics, pprof string
}

var managerStarts int

func startManager(t *testing.T, kubeconfig string, concurrency int) *proc {
	t.Helper()
	p := &proc{metrics: freeAddr(t), pprof: freeAddr(t)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), "SCALE_ROLE=manager", "KUBECONFIG="+kubeconfig,
		"SCALE_METRICS="+p.metrics, "SCALE_PPROF="+p.pprof, "SCALE_CONCURRENCY="+strconv.Itoa(concurrency))
	managerStarts++
	logf, err := os.Create(filepath.Join(resultsDir(t), fmt.Sprintf("scale-manager-%d.log", managerStarts)))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := p.scrape(); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("manager never served metrics; see bin/results/scale-manager.log")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *proc) scrape() (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// waitQuiet waits until the manager has made no write for quiet and returns the time of
// its last write.
func (p *proc) waitQuiet(t *testing.T, quiet time.Duration) time.Time {
	t.Helper()
	last, lastAt := p.snapshot(t).writes, time.Now()
	for time.Since(lastAt) < quiet {
		time.Sleep(250 * time.Millisecond)
		if w := p.snapshot(t).writes; w != last {
			last, lastAt = w, time.Now()
		}
	}
	return lastAt
}

// rssBytes reads the process's resident set from /proc.
func (p *proc) rssBytes() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return -1
}

// forceGC asks the manager's pprof endpoint for a heap profile after a collection, and
// keeps the profile in bin/results/scale-heap.pprof for `go tool pprof`.
func (p *proc) forceGC(t *testing.T) {
	resp, err := http.Get("http://" + p.pprof + "/debug/pprof/heap?gc=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(filepath.Join(resultsDir(t), "scale-heap.pprof")); err == nil {
		_, _ = io.Copy(f, resp.Body)
		f.Close()
	}
}

type snapshot struct {
	reads, writes, reconciles float64
	buckets                   []*dto.Bucket
	count                     uint64
	heap                      float64
}

func (p *proc) snapshot(t *testing.T) snapshot {
	t.Helper()
	fams, err := p.scrape()
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	if f := fams["rest_client_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			switch label(m, "method") {
			case "GET", "HEAD", "OPTIONS", "WATCH", "LIST":
				s.reads += m.GetCounter().GetValue()
			default:
				s.writes += m.GetCounter().GetValue()
			}
		}
	}
	if f := fams["controller_runtime_reconcile_total"]; f != nil {
		for _, m := range f.GetMetric() {
			if label(m, "controller") == "sessioncluster" {
				s.reconciles += m.GetCounter().GetValue()
			}
		}
	}
	if f := fams["controller_runtime_reconcile_time_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			if label(m, "controller") == "sessioncluster" {
				s.buckets, s.count = m.GetHistogram().GetBucket(), m.GetHistogram().GetSampleCount()
			}
		}
	}
	if f := fams["go_memstats_heap_alloc_bytes"]; f != nil {
		s.heap = f.GetMetric()[0].GetGauge().GetValue()
	}
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// histogramDelta is the reconcile-time histogram of what happened between two snapshots.
func histogramDelta(after, before snapshot) ([]*dto.Bucket, uint64) {
	out := make([]*dto.Bucket, len(after.buckets))
	for i, b := range after.buckets {
		c := b.GetCumulativeCount()
		if i < len(before.buckets) {
			c -= before.buckets[i].GetCumulativeCount()
		}
		out[i] = &dto.Bucket{UpperBound: ptr.To(b.GetUpperBound()), CumulativeCount: ptr.To(c)}
	}
	return out, after.count - before.count
}

// quantile interpolates within the histogram's buckets, as PromQL's histogram_quantile does.
func quantile(q float64, buckets []*dto.Bucket, count uint64) float64 {
	if count == 0 {
		return math.NaN()
	}
	rank := q * float64(count)
	prevUpper, prevCount := 0.0, 0.0
	for _, b := range buckets {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if math.IsInf(b.GetUpperBound(), 1) {
				return prevUpper
			}
			return prevUpper + (b.GetUpperBound()-prevUpper)*(rank-prevCount)/math.Max(c-prevCount, 1)
		}
		prevUpper, prevCount = b.GetUpperBound(), c
	}
	return prevUpper
}

// fleetMember is the i-th SessionCluster: a mix of Store, Sticky, hybrid and Clustered,
// with one or two apps.
func fleetMember(i int, ns string) *sessionv1.SessionCluster {
	sc := &sessionv1.SessionCluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("app%d", i), Namespace: ns}}
	sc.Spec.Apps = []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4", Replicas: ptr.To[int32](2)}}
	if i%3 == 0 {
		sc.Spec.Apps = append(sc.Spec.Apps, sessionv1.AppSpec{Name: "api", Image: "example/api:1", Path: "/api", Replicas: ptr.To[int32](2)})
	}
	ingress := &sessionv1.IngressSpec{Host: fmt.Sprintf("app%d.example.com", i)}
	switch i % 4 {
	case 0:
		sc.Spec.Mode = sessionv1.ModeStore
		sc.Spec.Store = &sessionv1.StoreSpec{}
	case 1:
		sc.Spec.Mode, sc.Spec.Sticky, sc.Spec.Ingress = sessionv1.ModeSticky, &sessionv1.StickySpec{}, ingress
	case 2:
		sc.Spec.Mode, sc.Spec.Sticky, sc.Spec.Ingress = sessionv1.ModeSticky, &sessionv1.StickySpec{}, ingress
		sc.Spec.Store = &sessionv1.StoreSpec{Persistence: &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}}
	case 3:
		sc.Spec.Mode = sessionv1.ModeClustered
		sc.Spec.Clustering = &sessionv1.ClusteringSpec{Discovery: sessionv1.DiscoveryDNS}
		if i%8 == 7 {
			sc.Spec.Clustering.Discovery = sessionv1.DiscoveryKubernetesAPI
		}
	}
	return sc
}

type results struct {
	N                        int     `json:"n"`
	Concurrency              int     `json:"max_concurrent_reconciles"`
	QPS                      int     `json:"kube_api_qps"`
	Objects                  int     `json:"child_objects"`
	ConvergeSeconds          float64 `json:"converge_seconds"`
	ObjectsPerSecond         float64 `json:"objects_per_second"`
	ReconcileP50Millis       float64 `json:"reconcile_p50_ms"`
	ReconcileP99Millis       float64 `json:"reconcile_p99_ms"`
	Reconciles               float64 `json:"reconciles"`
	ReadsPerReconcile        float64 `json:"reads_per_reconcile"`
	WritesPerReconcile       float64 `json:"writes_per_reconcile"`
	IdleSeconds              float64 `json:"idle_seconds"`
	IdleReconciles           float64 `json:"idle_reconciles"`
	IdleWrites               float64 `json:"idle_writes"`
	IdleReconcileP50Millis   float64 `json:"idle_reconcile_p50_ms"`
	IdleReconcileP99Millis   float64 `json:"idle_reconcile_p99_ms"`
	HeapMiB                  float64 `json:"heap_mib"`
	RSSMiB                   float64 `json:"rss_mib"`
	HeapAfterGCMiB           float64 `json:"heap_after_gc_mib"`
	RSSAfterGCMiB            float64 `json:"rss_after_gc_mib"`
	RestartRecoverSeconds    float64 `json:"restart_recover_seconds"`
	RestartWrites            float64 `json:"restart_writes"`
	RestartReconciles        float64 `json:"restart_reconciles"`
	RestartReadsPerReconcile float64 `json:"restart_reads_per_reconcile"`
	GoVersion                string  `json:"go_version"`
	CPUs                     int     `json:"cpus"`
}

func TestScale(t *testing.T) {
	n := envInt("SCALE_N", 1000)
	concurrency := envInt("SCALE_CONCURRENCY", manager.DefaultMaxConcurrentReconciles)
	idle := envDuration("SCALE_IDLE", 60*time.Second)
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: manager.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res := results{N: n, Concurrency: concurrency, QPS: envInt("SCALE_QPS", manager.DefaultQPS), GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}

	// The fleet: 20 SessionClusters per namespace.
	var fleet []*sessionv1.SessionCluster
	for i := range n {
		ns := fmt.Sprintf("team%d", i/20)
		if i%20 == 0 {
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				t.Fatal(err)
			}
		}
		fleet = append(fleet, fleetMember(i, ns))
	}
	for _, sc := range fleet {
		d, err := render.Render(sc, render.Options{}, render.Inputs{Password: "x-password"})
		if err != nil {
			t.Fatal(err)
		}
		res.Objects += len(d.Objects)
	}

	mgr := startManager(t, kubeconfig, concurrency)
	start := time.Now()
	for _, sc := range fleet {
		if err := c.Create(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c, n, res.Objects, 10*time.Minute)
	// Converged means settled too: the last status write (a store's condition moving on as
	// its workloads appear) belongs to convergence, not to the idle period.
	res.ConvergeSeconds = mgr.waitQuiet(t, 5*time.Second).Sub(start).Seconds()
	res.ObjectsPerSecond = float64(res.Objects) / res.ConvergeSeconds
	s := mgr.snapshot(t)
	res.Reconciles = s.reconciles
	res.ReconcileP50Millis = 1000 * quantile(0.50, s.buckets, s.count)
	res.ReconcileP99Millis = 1000 * quantile(0.99, s.buckets, s.count)
	res.ReadsPerReconcile = s.reads / s.reconciles
	res.WritesPerReconcile = s.writes / s.reconciles
	res.HeapMiB, res.RSSMiB = s.heap/(1<<20), float64(mgr.rssBytes())/(1<<20)

	// Idle: periodic store checks keep reconciling; none of them may write.
	before := mgr.snapshot(t)
	time.Sleep(idle)
	after := mgr.snapshot(t)
	res.IdleSeconds = idle.Seconds()
	res.IdleReconciles = after.reconciles - before.reconciles
	res.IdleWrites = after.writes - before.writes
	idleBuckets, idleCount := histogramDelta(after, before)
	res.IdleReconcileP50Millis = 1000 * quantile(0.50, idleBuckets, idleCount)
	res.IdleReconcileP99Millis = 1000 * quantile(0.99, idleBuckets, idleCount)
	mgr.forceGC(t)
	res.HeapAfterGCMiB, res.RSSAfterGCMiB = mgr.snapshot(t).heap/(1<<20), float64(mgr.rssBytes())/(1<<20)

	// Restart on the converged fleet: the new manager reconciles everything once and must
	// find nothing to write.
	mgr.stop()
	restart := time.Now()
	mgr = startManager(t, kubeconfig, concurrency)
	for {
		s = mgr.snapshot(t)
		if s.reconciles >= float64(n) {
			break
		}
		if time.Since(restart) > 5*time.Minute {
			t.Fatalf("after restart only %v reconciles", s.reconciles)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.RestartRecoverSeconds = time.Since(restart).Seconds()
	time.Sleep(5 * time.Second)
	s = mgr.snapshot(t)
	res.RestartWrites, res.RestartReconciles = s.writes, s.reconciles
	res.RestartReadsPerReconcile = s.reads / s.reconciles

	report(t, res)
	if doc := os.Getenv("SCALE_DOC"); doc != "" {
		if err := writeDoc(doc, res); err != nil {
			t.Error(err)
		}
	}
	if res.IdleWrites != 0 {
		t.Errorf("%v writes while idle", res.IdleWrites)
	}
	if res.RestartWrites != 0 {
		t.Errorf("%v writes after a restart on a converged fleet", res.RestartWrites)
	}
}

// waitConverged waits until every SessionCluster's status describes its current
// generation and every child exists.
func waitConverged(t *testing.T, c client.Client, n, objects int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	owned := client.MatchingLabels{render.LabelManagedBy: render.ManagedBy}
	for {
		list := &sessionv1.SessionClusterList{}
		if err := c.List(context.Background(), list); err != nil {
			t.Fatal(err)
		}
		current := 0
		for _, sc := range list.Items {
			if sc.Status.ObservedGeneration == sc.Generation && meta.IsStatusConditionFalse(sc.Status.Conditions, sessionv1.ConditionDegraded) {
				current++
			}
		}
		children := 0
		if current == n {
			for _, o := range controllers.ChildObjects() {
				l := &metav1.PartialObjectMetadataList{}
				gvk, _ := c.GroupVersionKindFor(o)
				l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
				if err := c.List(context.Background(), l, owned); err != nil {
					t.Fatal(err)
				}
				children += len(l.Items)
			}
			if children >= objects {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after %s: %d/%d current, %d/%d children", timeout, current, n, children, objects)
		}
		time.Sleep(time.Second)
	}
}

func report(t *testing.T, r results) {
	t.Helper()
	raw, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(filepath.Join(resultsDir(t), "scale.json"), append(raw, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("scale %-28s %v\n", k, m[k])
	}
}

const (
	docBegin = "<!-- scale benchmark: begin (written by make bench-scale) -->"
	docEnd   = "<!-- scale benchmark: end -->"
)

// writeDoc replaces the scale section of docs/benchmarks.md with this run's figures.
func writeDoc(path string, r results) error {
	load, _ := os.ReadFile("/proc/loadavg")
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n## Scale\n\n", docBegin)
	fmt.Fprintf(&b, "One manager, built by `internal/manager` as `main.go` builds it, runs as its own process against a\n")
	fmt.Fprintf(&b, "real kube-apiserver and etcd (envtest, same machine). The test creates %d SessionClusters at once in\n", r.N)
	fmt.Fprintf(&b, "%d namespaces (a quarter each Store, Sticky with an Ingress, the hybrid with persistence, and\n", (r.N+19)/20)
	fmt.Fprintf(&b, "Clustered; a third with two apps): %d children. envtest runs no pods, so a fixed observer answers\n", r.Objects)
	fmt.Fprintf(&b, "for the Sentinels. Figures come from the manager's own metrics (`controller_runtime_reconcile_*`,\n")
	fmt.Fprintf(&b, "`rest_client_requests_total`, `go_memstats_heap_alloc_bytes`) and `/proc/<pid>/status`. Reproduce with\n")
	fmt.Fprintf(&b, "`make bench-scale` (`SCALE_N`, `SCALE_QPS`, `SCALE_CONCURRENCY`, `SCALE_IDLE`); the JSON is `bin/results/scale.json`.\n\n")
	fmt.Fprintf(&b, "| figure | value | target |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| converge (children exist, status current, manager quiet) | %.1f s (%.0f objects/s) | < 120 s: %s |\n", r.ConvergeSeconds, r.ObjectsPerSecond, mark(r.ConvergeSeconds < 120))
	fmt.Fprintf(&b, "| reconcile latency during convergence, p50 / p99 | %.0f / %.0f ms | p99 < 250 ms: %s |\n", r.ReconcileP50Millis, r.ReconcileP99Millis, mark(r.ReconcileP99Millis < 250))
	fmt.Fprintf(&b, "| reconcile latency when idle, p50 / p99 | %.1f / %.1f ms | |\n", r.IdleReconcileP50Millis, r.IdleReconcileP99Millis)
	fmt.Fprintf(&b, "| API requests per reconcile during convergence, reads / writes | %.2f / %.2f | |\n", r.ReadsPerReconcile, r.WritesPerReconcile)
	fmt.Fprintf(&b, "| writes during %.0f s idle (%.0f reconciles) | %.0f | 0: %s |\n", r.IdleSeconds, r.IdleReconciles, r.IdleWrites, mark(r.IdleWrites == 0))
	fmt.Fprintf(&b, "| heap / RSS after convergence | %.1f / %.1f MiB | RSS < 150 MiB: %s |\n", r.HeapMiB, r.RSSMiB, mark(r.RSSMiB < 150))
	fmt.Fprintf(&b, "| heap / RSS after a forced GC | %.1f / %.1f MiB | |\n", r.HeapAfterGCMiB, r.RSSAfterGCMiB)
	fmt.Fprintf(&b, "| restart on the converged fleet: every SessionCluster reconciled | %.1f s | |\n", r.RestartRecoverSeconds)
	fmt.Fprintf(&b, "| writes after that restart (%.0f reconciles) | %.0f | 0: %s |\n", r.RestartReconciles, r.RestartWrites, mark(r.RestartWrites == 0))
	fmt.Fprintf(&b, "\nSettings: `--max-concurrent-reconciles=%d`, `--kube-api-qps=%d`, GOGC %d. Measured %s on linux/%s, %d CPUs, %s;\nload average %s at the end.\n%s\n",
		r.Concurrency, r.QPS, manager.DefaultGCPercent, time.Now().UTC().Format("2006-01-02"), runtime.GOARCH, r.CPUs, r.GoVersion, strings.TrimSpace(string(load)), docEnd)
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if i, j := strings.Index(text, docBegin), strings.Index(text, docEnd); i >= 0 && j > i {
		text = text[:i] + b.String() + text[j+len(docEnd)+1:]
	} else {
		if text == "" {
			text = "# Benchmarks\n"
		}
		text = strings.TrimRight(text, "\n") + "\n\n" + b.String()
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func resultsDir(t *testing.T) string {
	dir := filepath.Join(testenv.RepoRoot(), "bin", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
