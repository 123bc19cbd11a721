// Package metrics holds the operator's own Prometheus metrics, registered with
// controller-runtime's registry so they are served beside its metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// Failovers counts primary changes per SessionCluster.
	Failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "session_operator_failovers_total",
		Help: "Primary changes of a SessionCluster's store seen by the operator.",
	}, []string{"namespace", "name"})

	// FailoverDuration observes how long failovers took, when Sentinel told us.
	FailoverDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "session_operator_failover_duration_seconds",
		Help:    "Seconds from the old primary being seen down to the new primary, per SessionCluster.",
		Buckets: []float64{1, 2, 5, 10, 15, 20, 30, 60, 120},
	}, []string{"namespace", "name"})

	// ReconcileErrors counts failed reconcile steps.
	ReconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "session_operator_reconcile_errors_total",
		Help: "Reconcile passes that failed, by the step that failed.",
	}, []string{"step"})

	// StoreReplicasReady is the number of ready Redis servers per SessionCluster.
	StoreReplicasReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "session_operator_store_replicas_ready",
		Help: "Ready Redis servers of a SessionCluster's store.",
	}, []string{"namespace", "name"})

	// SessionsStored is the primary's key count, sampled.
	SessionsStored = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "session_operator_sessions_stored",
		Help: "Keys in the primary of a SessionCluster's store (DBSIZE), sampled.",
	}, []string{"namespace", "name"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Failovers, FailoverDuration, ReconcileErrors, StoreReplicasReady, SessionsStored)
}

// Forget drops the series of a deleted SessionCluster.
func Forget(namespace, name string) {
	for _, v := range []*prometheus.GaugeVec{StoreReplicasReady, SessionsStored} {
		v.DeleteLabelValues(namespace, name)
	}
	Failovers.DeleteLabelValues(namespace, name)
	FailoverDuration.DeleteLabelValues(namespace, name)
}
