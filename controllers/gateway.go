package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// httpRouteKind is the Gateway API kind the operator writes.
var httpRouteKind = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}

// GatewayDetector tells whether the Gateway API CRDs are installed, asking discovery at
// most once per TTL so that a thousand SessionClusters do not mean a thousand lookups.
type GatewayDetector struct {
	Mapper meta.RESTMapper
	TTL    time.Duration

	mu        sync.Mutex
	checked   time.Time
	installed bool
}

// Installed reports whether HTTPRoute is served.
func (g *GatewayDetector) Installed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.checked) < g.TTL {
		return g.installed
	}
	g.checked = time.Now()
	_, err := g.Mapper.RESTMapping(httpRouteKind.GroupKind(), httpRouteKind.Version)
	g.installed = err == nil
	return g.installed
}

// GatewayAPIServed asks the apiserver directly, before a manager (and its cache) exists.
func GatewayAPIServed(cfg *rest.Config) bool {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false
	}
	list, err := dc.ServerResourcesForGroupVersion(httpRouteKind.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Kind == httpRouteKind.Kind {
			return true
		}
	}
	return false
}
