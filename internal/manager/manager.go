// Package manager assembles the operator: the controller-runtime manager with its
// label-selected cache, the SessionCluster controller and its store observer. main.go
// and the scale benchmark build the same manager through it.
package manager

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/controllers"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// Scheme holds every kind the operator reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(sessionv1.AddToScheme(Scheme))
	utilruntime.Must(gatewayv1.Install(Scheme))
}

// Defaults of the manager's flags that the scale benchmark also runs with (docs/benchmarks.md).
// Creating a SessionCluster costs about 24 requests (a read to make sure no stranger owns
// each child's name, its server-side apply, status): at 100 QPS ten thousand of them need
// 40 minutes of the rate limiter alone, so the limit is 300 and four workers keep it busy
// while each waits on the apiserver; the apiserver's priority and fairness still applies.
const (
	DefaultMaxConcurrentReconciles = 4
	DefaultQPS                     = 300
	DefaultBurst                   = 600
)

// DefaultSentinelWatchers is how many of each store's Sentinels the observer subscribes
// to by default: all of them (0), so a failover's start is seen by whichever Sentinel
// leads it; the cap (--sentinel-max-connections) bounds the total.
const DefaultSentinelWatchers = 0

// DefaultGCPercent is the manager's GOGC unless the environment sets one. Most of its heap
// is the long-lived cache of children, so collecting at half the live heap instead of the
// whole of it costs little CPU and keeps the resident set near the cache's size.
const DefaultGCPercent = 50

// TuneGC applies percent as GOGC unless GOGC is set in the environment.
func TuneGC(percent int) {
	if os.Getenv("GOGC") == "" && percent > 0 {
		debug.SetGCPercent(percent)
	}
}

// DefaultMemoryLimitRatio is the share of the container's memory limit the Go runtime is
// told to keep the manager under (GOMEMLIMIT). Without it the collector knows nothing of
// the limit: a cache that fits with room to spare can still be killed for the garbage
// GOGC lets pile up on top of it.
const DefaultMemoryLimitRatio = 0.9

// MemoryLimitEnv holds the container's memory limit in bytes; the chart sets it from the
// downward API (limits.memory, which is the node's allocatable memory when no limit is
// set).
const MemoryLimitEnv = "MEMORY_LIMIT"

// TuneMemory applies ratio of the container's memory limit as the Go runtime's soft
// memory limit, unless GOMEMLIMIT is set in the environment. It returns the limit set, or
// 0 when none was.
func TuneMemory(ratio float64) int64 {
	limit := memoryLimit(os.Getenv, ratio)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit
}

func memoryLimit(getenv func(string) string, ratio float64) int64 {
	if getenv("GOMEMLIMIT") != "" || ratio <= 0 || ratio > 1 {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(getenv(MemoryLimitEnv)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return int64(float64(n) * ratio)
}

// Options are the operator's settings, one per command-line flag.
type Options struct {
	MetricsAddr, ProbeAddr, PprofAddr string
	LeaderElect                       bool
	MaxConcurrentReconciles           int
	ObserveConcurrency                int
	ObserveTimeout                    time.Duration
	// ObserveInterval is how often a settled store is asked again without any
	// announcement from its Sentinels (0: store.DefaultResync).
	ObserveInterval time.Duration
	// SentinelConnections caps the connections the observer holds (0:
	// store.DefaultMaxConnections); SentinelWatchers is how many of each store's
	// Sentinels it subscribes to (0: all).
	SentinelConnections int
	SentinelWatchers    int
	// SentinelDial, when set, opens every connection to a store (the observer's, the
	// rollout's, the users' sync): the scale benchmark maps the stores' addresses to a
	// simulated Sentinel with it. Never set in production.
	SentinelDial  store.DialFunc
	ClusterDomain string
	Namespaces    []string
	// OperatorNamespace is where the operator's pods run; the stores' NetworkPolicies
	// admit the operator from there only.
	OperatorNamespace string
	// QPS and Burst bound the manager's own API requests.
	QPS   float32
	Burst int
	// Observer asks the stores' Sentinels; nil uses the real one.
	Observer store.Observer
	// Admin takes the planned rollout steps on the stores; nil uses the real one, unless
	// Observer is set (a test without stores).
	Admin controllers.StoreAdmin
	// KeepIdleMemory leaves the memory kept after a burst with the Go runtime instead of
	// returning it once the manager is quiet (IdleMemory).
	KeepIdleMemory bool
}

// New builds the manager with the SessionCluster controller registered.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	cfg = rest.CopyConfig(cfg)
	if o.QPS > 0 {
		cfg.QPS, cfg.Burst = o.QPS, o.Burst
	}
	// HTTPRoutes are cached and watched only when their CRD exists at start; installed
	// later, they are still written (detected per pass) and found again on restart.
	httpRoutes := controllers.GatewayAPIServed(cfg)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.ProbeAddr,
		PprofBindAddress:       o.PprofAddr,
		LeaderElection:         o.LeaderElect,
		LeaderElectionID:       "session-operator.session.sessionops.dev",
		// A stopping manager gives up its lease, so its successor (a rolling update, a
		// deleted pod) takes over in seconds rather than after the lease expires. Safe
		// because the manager exits as soon as Start returns.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(o.Namespaces, httpRoutes),
		NewCache:                      controllers.NewCache,
	})
	if err != nil {
		return nil, err
	}
	waker := controllers.NewWaker()
	observer, admin := o.Observer, o.Admin
	if admin == nil && observer == nil {
		admin = &store.Admin{Timeout: o.ObserveTimeout, Dial: o.SentinelDial}
	}
	if observer == nil {
		sentinels := store.NewSentinelObserver(o.ObserveConcurrency, o.ObserveTimeout)
		sentinels.Notify = waker.Wake
		sentinels.MaxConnections = o.SentinelConnections
		sentinels.WatchersPerStore = o.SentinelWatchers
		sentinels.Resync = o.ObserveInterval
		sentinels.Dial = o.SentinelDial
		observer = sentinels
		store.RouteRedisLogs(ctrl.Log)
		registerObserverMetrics(sentinels)
		// The observation workers run with the manager; stopping closes every connection.
		if err := mgr.Add(sentinels); err != nil {
			return nil, err
		}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the discovery client: %w", err)
	}
	gateway := &controllers.GatewayDetector{Mapper: mgr.GetRESTMapper(), OpenAPI: dc.OpenAPIV3(), TTL: time.Minute}
	r := &controllers.SessionClusterReconciler{
		Client:                    mgr.GetClient(),
		APIReader:                 mgr.GetAPIReader(),
		Events:                    mgr.GetEventRecorder("session-operator"),
		Observer:                  observer,
		Admin:                     admin,
		Render:                    render.Options{ClusterDomain: o.ClusterDomain, OperatorNamespace: o.OperatorNamespace},
		MaxConcurrentReconciles:   o.MaxConcurrentReconciles,
		GatewayAPI:                gateway.Installed,
		GatewaySessionPersistence: gateway.SessionPersistenceServed,
		WatchHTTPRoutes:           httpRoutes,
		Waker:                     waker,
		Namespaces:                o.Namespaces,
	}
	if dial := o.SentinelDial; dial != nil {
		r.SyncUsers = func(ctx context.Context, t store.UsersTarget) (store.UsersSync, error) {
			t.Dial = dial
			return store.SyncUsers(ctx, t)
		}
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if !o.KeepIdleMemory {
		if err := mgr.Add(NewIdleMemory()); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// serviceAccountNamespace is where Kubernetes mounts the namespace of a pod's service account.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// OwnNamespace is the namespace this process runs in as a pod, or "" outside a cluster.
func OwnNamespace() string {
	b, err := os.ReadFile(serviceAccountNamespace)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
