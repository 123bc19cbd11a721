//go:build scale

package scale

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// benchRequests counts the manager's API requests by method, resource and outcome, so a
// run says which requests a SessionCluster costs, not only how many.
var benchRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "scale_bench_requests_total",
	Help: "API requests of the manager under the scale benchmark, by kind of request.",
}, []string{"request"})

// countRequests wraps the manager's transport with benchRequests.
func countRequests(cfg *rest.Config) {
	ctrlmetrics.Registry.MustRegister(benchRequests)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			code := "error"
			if err == nil {
				code = fmt.Sprint(resp.StatusCode)
			}
			benchRequests.WithLabelValues(requestKind(req, code)).Inc()
			return resp, err
		})
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requestKind names a request like "GET secrets 404" or "PATCH sessionclusters/status 200";
// a request on a collection reads "LIST secrets", a watch "WATCH secrets".
func requestKind(req *http.Request, code string) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// /api/v1/... or /apis/group/version/...
	if len(parts) > 0 && parts[0] == "api" {
		parts = parts[min(2, len(parts)):]
	} else {
		parts = parts[min(3, len(parts)):]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	method := req.Method
	resource := strings.Join(parts, "/")
	switch len(parts) {
	case 0:
		resource = "-"
	case 1:
		if method == http.MethodGet {
			method = "LIST"
			if req.URL.Query().Get("watch") == "true" {
				method = "WATCH"
			}
		}
	case 2:
		resource = parts[0]
	default:
		resource = parts[0] + "/" + strings.Join(parts[2:], "/")
	}
	return method + " " + resource + " " + code
}

// requestBreakdown is the delta of benchRequests between two scrapes, per SessionCluster,
// largest first, as "1.00 GET secrets 404" lines.
func requestBreakdown(after, before map[string]float64, n int) []string {
	var out []string
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return after[keys[i]]-before[keys[i]] > after[keys[j]]-before[keys[j]] })
	for _, k := range keys {
		d := after[k] - before[k]
		if d <= 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%.2f %s", d/float64(max(n, 1)), k))
	}
	return out
}
