package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// httpRouteKind is the Gateway API kind the operator writes.
var httpRouteKind = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}

// GatewayDetector tells whether the Gateway API CRDs are installed, asking discovery at
// most once per TTL so that a thousand SessionClusters do not mean a thousand lookups.
type GatewayDetector struct {
	Mapper meta.RESTMapper
	// OpenAPI reads the served HTTPRoute schema; nil assumes it carries sessionPersistence.
	OpenAPI openapi.Client
	TTL     time.Duration

	mu          sync.Mutex
	checked     time.Time
	installed   bool
	persistence bool
	schemaKnown bool
}

// Installed reports whether HTTPRoute is served.
func (g *GatewayDetector) Installed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refresh()
	return g.installed
}

// SessionPersistenceServed reports whether the served HTTPRoute schema keeps a rule's
// sessionPersistence. Until the schema could be read once, it answers true: an unreadable
// schema must not block routing that may well work.
func (g *GatewayDetector) SessionPersistenceServed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refresh()
	return g.persistence || !g.schemaKnown
}

func (g *GatewayDetector) refresh() {
	if !g.checked.IsZero() && time.Since(g.checked) < g.TTL {
		return
	}
	g.checked = time.Now()
	_, err := g.Mapper.RESTMapping(httpRouteKind.GroupKind(), httpRouteKind.Version)
	g.installed = err == nil
	if !g.installed || g.OpenAPI == nil {
		return
	}
	served, err := httpRouteSchemaServesSessionPersistence(g.OpenAPI)
	if err != nil {
		// Keep the last answer; the next check after the TTL tries again.
		return
	}
	g.persistence, g.schemaKnown = served, true
}

// GatewayAPIServed asks the apiserver directly, before a manager (and its cache) exists.
// A discovery error other than "not found" is retried a few times; if it persists the
// answer is false, and the reconciler starts the HTTPRoute watch once discovery sees the
// kind (watchHTTPRoutes), so an apiserver hiccup at start does not leave routes unwatched.
func GatewayAPIServed(cfg *rest.Config) bool {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false
	}
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		list, err := dc.ServerResourcesForGroupVersion(httpRouteKind.GroupVersion().String())
		if err == nil {
			for _, r := range list.APIResources {
				if r.Kind == httpRouteKind.Kind {
					return true
				}
			}
			return false
		}
		if apierrors.IsNotFound(err) || attempt == 4 {
			return false
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

func (r *SessionClusterReconciler) routesWatched() bool {
	r.routeWatchMu.Lock()
	defer r.routeWatchMu.Unlock()
	return r.WatchHTTPRoutes
}

// watchHTTPRoutes starts watching HTTPRoutes the first time a pass finds the Gateway API
// installed when it was not at start. That informer is not label-selected (the cache's
// options are fixed at start); a restart of the manager brings back the selected one.
func (r *SessionClusterReconciler) watchHTTPRoutes(ctx context.Context) error {
	r.routeWatchMu.Lock()
	defer r.routeWatchMu.Unlock()
	if r.WatchHTTPRoutes || r.ctrl == nil || !r.gatewayAPIInstalled() {
		return nil
	}
	src := source.Kind(r.cache, client.Object(&gatewayv1.HTTPRoute{}),
		handler.EnqueueRequestForOwner(r.Scheme(), r.RESTMapper(), &sessionv1.SessionCluster{}, handler.OnlyControllerOwner()))
	if err := r.ctrl.Watch(src); err != nil {
		return fmt.Errorf("watching httproutes: %w", err)
	}
	r.WatchHTTPRoutes = true
	log.FromContext(ctx).Info("gateway API found after start: watching HTTPRoutes")
	return nil
}
