package controllers

import (
	"context"
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// routingVerdict is what the ingress controller or the Gateway reported about the routes
// of one pass: nothing yet (pending), or a refusal.
type routingVerdict struct {
	pending  string
	rejected string
}

// observeRoutingStatus reads what the cluster reports about the routes the operator wrote:
// an Ingress is routed once its controller published an address in status.loadBalancer;
// an HTTPRoute once every parent Gateway reports it Accepted with its references
// resolved, for the route's current generation.
func (r *SessionClusterReconciler) observeRoutingStatus(ctx context.Context, p *pass) error {
	in := p.spec.Ingress
	if in == nil || p.routingBlocked != "" {
		return nil
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	if in.Controller == sessionv1.ControllerGatewayAPI {
		if !p.inputs.GatewayAPI {
			return nil
		}
		route := &gatewayv1.HTTPRoute{}
		// The cache holds HTTPRoutes only once they are watched.
		var reader client.Reader = r.APIReader
		if r.routesWatched() {
			reader = r.Client
		}
		err := reader.Get(ctx, client.ObjectKey{Namespace: p.sc.Namespace, Name: n.Cluster}, route)
		if apierrors.IsNotFound(err) {
			p.routing = routingVerdict{pending: "HTTPRoute " + n.Cluster + " is not created yet"}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading httproute %s: %w", n.Cluster, err)
		}
		p.routing = routeVerdict(route)
		return nil
	}
	var waiting []string
	for _, app := range p.spec.Apps {
		ing := &networkingv1.Ingress{}
		err := r.Get(ctx, client.ObjectKey{Namespace: p.sc.Namespace, Name: n.App(app.Name)}, ing)
		if apierrors.IsNotFound(err) {
			waiting = append(waiting, n.App(app.Name))
			continue
		}
		if err != nil {
			return fmt.Errorf("reading ingress %s: %w", n.App(app.Name), err)
		}
		if !ingressAddressed(ing) {
			waiting = append(waiting, ing.Name)
		}
	}
	if len(waiting) > 0 {
		class := "its class"
		if in.ClassName != nil {
			class = "class " + *in.ClassName
		}
		p.routing.pending = fmt.Sprintf("No ingress controller of %s has published an address for Ingress %s yet (status.loadBalancer is empty)",
			class, strings.Join(waiting, ", "))
	}
	return nil
}

// ingressAddressed reports an Ingress to which its controller gave an IP or a hostname.
func ingressAddressed(ing *networkingv1.Ingress) bool {
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		if lb.IP != "" || lb.Hostname != "" {
			return true
		}
	}
	return false
}

// routeVerdict reads an HTTPRoute's status.parents: each parent in spec must report
// Accepted and ResolvedRefs True for the route's current generation.
func routeVerdict(route *gatewayv1.HTTPRoute) routingVerdict {
	var pending, rejected []string
	for _, ref := range route.Spec.ParentRefs {
		name := parentName(route.Namespace, ref)
		st := parentStatus(route, ref)
		if st == nil {
			pending = append(pending, name+" has not reported on the route")
			continue
		}
		for _, t := range []string{string(gatewayv1.RouteConditionAccepted), string(gatewayv1.RouteConditionResolvedRefs)} {
			c := meta.FindStatusCondition(st.Conditions, t)
			switch {
			case c == nil || c.ObservedGeneration < route.Generation:
				pending = append(pending, fmt.Sprintf("%s has not reported %s for generation %d", name, t, route.Generation))
			case c.Status == metav1.ConditionFalse:
				rejected = append(rejected, fmt.Sprintf("%s reports %s=False (%s): %s", name, t, c.Reason, c.Message))
			case c.Status != metav1.ConditionTrue:
				pending = append(pending, fmt.Sprintf("%s reports %s=%s (%s)", name, t, c.Status, c.Reason))
			}
		}
	}
	v := routingVerdict{}
	if len(rejected) > 0 {
		v.rejected = "HTTPRoute " + route.Name + ": " + strings.Join(rejected, "; ")
	} else if len(pending) > 0 {
		v.pending = "HTTPRoute " + route.Name + ": " + strings.Join(pending, "; ")
	}
	return v
}

// parentStatus finds the status a Gateway wrote for one parent reference.
func parentStatus(route *gatewayv1.HTTPRoute, ref gatewayv1.ParentReference) *gatewayv1.RouteParentStatus {
	want := parentName(route.Namespace, ref)
	for i := range route.Status.Parents {
		if parentName(route.Namespace, route.Status.Parents[i].ParentRef) == want {
			return &route.Status.Parents[i]
		}
	}
	return nil
}

// parentName spells a parent reference with its defaults filled in.
func parentName(routeNS string, ref gatewayv1.ParentReference) string {
	ns := routeNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	kind := "Gateway"
	if ref.Kind != nil && *ref.Kind != "" {
		kind = string(*ref.Kind)
	}
	s := fmt.Sprintf("%s %s/%s", kind, ns, ref.Name)
	if ref.SectionName != nil && *ref.SectionName != "" {
		s += " (" + string(*ref.SectionName) + ")"
	}
	return s
}
