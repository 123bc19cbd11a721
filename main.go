// Command session-operator runs the SessionCluster controller.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sessionops/session-operator/internal/manager"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
	"github.com/sessionops/session-operator/internal/uninstall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "uninstall" {
		os.Exit(runUninstall(os.Args[2:]))
	}
	var (
		o                manager.Options
		watchNamespaces  string
		qps              float64
		gcPercent        int
		memoryRatio      float64
		returnIdleMemory bool
	)
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address the health probe endpoint binds to.")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "0", "Address the pprof endpoint binds to; 0 disables it.")
	flag.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect a leader so that only one replica of the manager is active.")
	flag.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", manager.DefaultMaxConcurrentReconciles, "SessionClusters reconciled in parallel.")
	flag.IntVar(&o.ObserveConcurrency, "store-observe-concurrency", 8, "Stores whose Sentinels are asked at once.")
	flag.DurationVar(&o.ObserveTimeout, "store-observe-timeout", 2*time.Second, "Timeout of one question to one Sentinel.")
	flag.DurationVar(&o.ObserveInterval, "store-observe-interval", store.DefaultResync, "How often a settled store's Sentinels are asked again when none of them announced anything.")
	flag.IntVar(&o.SentinelConnections, "sentinel-max-connections", store.DefaultMaxConnections, "Cap on the connections the store observer holds to Sentinels and primaries (subscriptions and queries).")
	flag.IntVar(&o.SentinelWatchers, "sentinel-subscriptions-per-store", manager.DefaultSentinelWatchers, "How many of each store's Sentinels the observer subscribes to; 0 subscribes to all.")
	flag.StringVar(&o.ClusterDomain, "cluster-domain", render.DefaultClusterDomain, "The cluster's DNS domain.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to manage; empty manages all.")
	flag.StringVar(&o.OperatorNamespace, "operator-namespace", "", "Namespace of the operator's pods, which the stores' NetworkPolicies admit; empty: the namespace this pod runs in.")
	flag.Float64Var(&qps, "kube-api-qps", manager.DefaultQPS, "Queries per second the manager may send the apiserver.")
	flag.IntVar(&o.Burst, "kube-api-burst", manager.DefaultBurst, "Burst of queries above kube-api-qps.")
	flag.IntVar(&gcPercent, "gc-percent", manager.DefaultGCPercent, "GOGC for the manager, unless the GOGC environment variable is set.")
	flag.Float64Var(&memoryRatio, "memory-limit-ratio", manager.DefaultMemoryLimitRatio, "Share of the container's memory limit ("+manager.MemoryLimitEnv+", bytes) the Go runtime keeps the manager under, unless GOMEMLIMIT is set; 0 sets none.")
	flag.BoolVar(&returnIdleMemory, "return-idle-memory", true, "Once the manager is quiet after a burst, collect and return the free memory the Go runtime keeps for the next one.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	o.QPS = float32(qps)
	o.KeepIdleMemory = !returnIdleMemory
	manager.TuneGC(gcPercent)
	if limit := manager.TuneMemory(memoryRatio); limit > 0 {
		log.Info("soft memory limit set", "limitBytes", limit)
	}
	o.Namespaces = splitNamespaces(watchNamespaces)
	if o.OperatorNamespace == "" {
		o.OperatorNamespace = manager.OwnNamespace()
	}
	if o.OperatorNamespace == "" {
		log.Info("not running in a pod and no --operator-namespace: stores' NetworkPolicies admit the operator's labels from any namespace")
	}

	mgr, err := manager.New(ctrl.GetConfigOrDie(), o)
	if err != nil {
		log.Error(err, "creating manager")
		os.Exit(1)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running manager")
		os.Exit(1)
	}
}

// runUninstall is the chart's pre-delete hook: session-operator uninstall [flags].
func runUninstall(args []string) int {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	var (
		o               uninstall.Options
		watchNamespaces string
	)
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "How long the manager gets to unwire users' workloads before their SessionClusters' finalizers are removed.")
	fs.StringVar(&watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to empty; empty: all.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("uninstall")
	o.Namespaces = splitNamespaces(watchNamespaces)
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: manager.Scheme})
	if err != nil {
		log.Error(err, "creating client")
		return 1
	}
	if err := uninstall.Run(ctrl.LoggerInto(ctrl.SetupSignalHandler(), log), c, o); err != nil {
		log.Error(err, "emptying the cluster of SessionClusters")
		return 1
	}
	log.Info("every SessionCluster deleted")
	return 0
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
