package manager

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sessionops/session-operator/internal/store"
)

var registerOnce sync.Once

// registerObserverMetrics exposes the observer's connections, so that an operator (and
// the scale benchmark) sees what the cap leaves.
func registerObserverMetrics(o *store.SentinelObserver) {
	registerOnce.Do(func() {
		gauge := func(name, help string, f func() float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
		}
		ctrlmetrics.Registry.MustRegister(
			gauge("session_operator_sentinel_subscriptions", "Sentinel subscription connections held by the store observer.",
				func() float64 { s, _, _ := o.Connections(); return float64(s) }),
			gauge("session_operator_sentinel_query_connections", "Query connections (to Sentinels and primaries) held by the store observer.",
				func() float64 { _, q, _ := o.Connections(); return float64(q) }),
			gauge("session_operator_sentinel_connections_max", "The cap on the store observer's connections (--sentinel-max-connections).",
				func() float64 { _, _, c := o.Connections(); return float64(c) }),
		)
	})
}
