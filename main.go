// Command session-operator runs the SessionCluster controller.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/controllers"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(sessionv1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme))
}

func main() {
	var (
		metricsAddr, probeAddr, clusterDomain, watchNamespaces string
		leaderElect                                            bool
		concurrency, observeConcurrency                        int
		observeTimeout                                         time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probe endpoint binds to.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one replica of the manager is active.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 4, "SessionClusters reconciled in parallel.")
	flag.IntVar(&observeConcurrency, "store-observe-concurrency", 8, "Stores whose Sentinels are asked at once.")
	flag.DurationVar(&observeTimeout, "store-observe-timeout", 2*time.Second, "Timeout of one question to one Sentinel.")
	flag.StringVar(&clusterDomain, "cluster-domain", render.DefaultClusterDomain, "The cluster's DNS domain.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to manage; empty manages all.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	cfg := ctrl.GetConfigOrDie()
	// HTTPRoutes are cached and watched only when their CRD exists at start; installed
	// later, they are still written (detected per pass) and found again on restart.
	httpRoutes := controllers.GatewayAPIServed(cfg)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "session-operator.session.sessionops.dev",
		Cache:                  controllers.CacheOptions(splitNamespaces(watchNamespaces), httpRoutes),
	})
	if err != nil {
		setupLog.Error(err, "creating manager")
		os.Exit(1)
	}
	observer := store.NewSentinelObserver(observeConcurrency, observeTimeout)
	defer observer.Close()
	r := &controllers.SessionClusterReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Events:                  mgr.GetEventRecorder("session-operator"),
		Observer:                observer,
		Render:                  render.Options{ClusterDomain: clusterDomain},
		MaxConcurrentReconciles: concurrency,
		GatewayAPI:              (&controllers.GatewayDetector{Mapper: mgr.GetRESTMapper(), TTL: time.Minute}).Installed,
		WatchHTTPRoutes:         httpRoutes,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "setting up controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "adding health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "adding ready check")
		os.Exit(1)
	}
	setupLog.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "running manager")
		os.Exit(1)
	}
}

func splitNamespaces(s string) []string {
	var out []string
	for _, ns := range strings.Split(s, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}
