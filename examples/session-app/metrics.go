package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the app's Prometheus series, on a registry of their own so that
// several app instances can live in one test process.
type metrics struct {
	reg             *prometheus.Registry
	requestDuration *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec
	sessionsCreated prometheus.Counter
}

func newMetrics(backend string) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "session_app_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "session_app_store_errors_total",
			Help: "Session store errors by operation (create, incr, get, wait, ping). wait counts writes the replicas did not acknowledge in time.",
		}, []string{"operation"}),
		sessionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "session_app_sessions_created_total",
			Help: "Sessions created (and acknowledged by the store).",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "session_app_info",
		Help:        "Constant 1, labelled with the session backend in use.",
		ConstLabels: prometheus.Labels{"backend": backend},
	})
	info.Set(1)
	reg.MustRegister(m.requestDuration, m.storeErrors, m.sessionsCreated, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, op := range []string{"create", "incr", "get", "wait", "ping"} {
		m.storeErrors.WithLabelValues(op) // export zeros, so rate() works from the start
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// instrument wraps a handler and observes its latency under a fixed route name.
func (m *metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		m.requestDuration.WithLabelValues(route, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	}
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}
