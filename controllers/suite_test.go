package controllers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/store"
	"github.com/sessionops/session-operator/internal/testenv"
)

// The suite runs the real manager against a real kube-apiserver and etcd. envtest runs no
// controllers of its own: no pods start, no garbage collector runs, so tests play the
// kubelet's part by writing workload status, and assert owner references for the rest.
var (
	k8s      client.WithWatch
	observer = store.NewStatic()
	admin    = newFakeAdmin()
	clusters = newFakeCluster()
	// users stands in for the live ACL step: envtest runs no Redis.
	users = &fakeUsers{failing: map[string]bool{}}
	// managerWrites counts the manager's own write requests, not the tests'.
	managerWrites = &testenv.Counter{}
	waker         = NewWaker()
	// mgrCache is the manager's cache, for tests of what it holds.
	mgrCache cache.Cache
	// restConfig reaches the test apiserver, for tests that start caches of their own.
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
	nsCounter  atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(sessionv1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv("TEST_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	managerWrites.KeepLog()
	mgr, err := ctrl.NewManager(managerWrites.Counting(cfg), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(nil, false),
		NewCache:               NewCache,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgrCache, restConfig = mgr.GetCache(), cfg
	gateway := &GatewayDetector{Mapper: mgr.GetRESTMapper(), OpenAPI: discovery.NewDiscoveryClientForConfigOrDie(cfg).OpenAPIV3()}
	r := &SessionClusterReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Events:                  mgr.GetEventRecorder("session-operator"),
		Observer:                observer,
		Admin:                   admin,
		Cluster:                 clusters,
		SyncUsers:               users.sync,
		MaxConcurrentReconciles: 4,
		// No TTL: the Gateway API test installs the CRDs mid-run.
		GatewayAPI:                gateway.Installed,
		GatewaySessionPersistence: gateway.SessionPersistenceServed,
		Waker:                     waker,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return code
}

// namespace makes a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name())))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.TrimRight(name, "-")
	if err := k8s.Create(context.Background(), namespaceObject(name)); err != nil {
		t.Fatal(err)
	}
	return name
}

func ctrlKey(name string) client.ObjectKey { return client.ObjectKey{Name: name} }

func namespaceObject(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(t *testing.T, ns, name string, obj client.Object) error {
	t.Helper()
	return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
}

// reconciles is how many reconciles the controller has finished, from controller-runtime's
// own metric.
func reconciles(t *testing.T) float64 {
	t.Helper()
	return reconcileCount()
}

func reconcileCount() float64 {
	families, _ := ctrlmetrics.Registry.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "controller") == "sessioncluster" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				if labelValue(m, k) != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// eventWith finds an event about a SessionCluster with the reason.
func eventWith(t *testing.T, ns, reason string) (*eventsv1.Event, error) {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Reason == reason {
			return &list.Items[i], nil
		}
	}
	return nil, fmt.Errorf("no event with reason %s in %s", reason, ns)
}
