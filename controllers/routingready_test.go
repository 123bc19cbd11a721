package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// publishIngressAddress does what an ingress controller does once it serves an Ingress.
func publishIngressAddress(t *testing.T, ns, name, ip string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ing := &networkingv1.Ingress{}
		if err := get(t, ns, name, ing); err != nil {
			return err
		}
		ing.Status.LoadBalancer.Ingress = nil
		if ip != "" {
			ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: ip}}
		}
		return k8s.Status().Update(context.Background(), ing)
	})
	if err != nil {
		t.Fatalf("publishing the address of ingress %s: %v", name, err)
	}
}

// reportRouteParents does what a Gateway controller does: one status.parents entry per
// parent in spec, with Accepted and ResolvedRefs as given.
func reportRouteParents(t *testing.T, ns, name string, accepted, resolved metav1.ConditionStatus) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		route := &gatewayv1.HTTPRoute{}
		if err := get(t, ns, name, route); err != nil {
			return err
		}
		route.Status.Parents = nil
		for _, ref := range route.Spec.ParentRefs {
			cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
				return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: "set by the test",
					ObservedGeneration: route.Generation, LastTransitionTime: metav1.Now()}
			}
			acceptedReason, resolvedReason := "Accepted", "ResolvedRefs"
			if accepted == metav1.ConditionFalse {
				acceptedReason = "NotAllowedByListeners"
			}
			if resolved == metav1.ConditionFalse {
				resolvedReason = "BackendNotFound"
			}
			route.Status.Parents = append(route.Status.Parents, gatewayv1.RouteParentStatus{
				ParentRef:      ref,
				ControllerName: "example.com/gateway-controller",
				Conditions: []metav1.Condition{
					cond(string(gatewayv1.RouteConditionAccepted), accepted, acceptedReason),
					cond(string(gatewayv1.RouteConditionResolvedRefs), resolved, resolvedReason),
				},
			})
		}
		return k8s.Status().Update(context.Background(), route)
	})
	if err != nil {
		t.Fatalf("reporting the parents of httproute %s: %v", name, err)
	}
}

// TestRoutingReadyFromIngressStatus: an Ingress that no controller has taken holds Ready
// back with RoutingPending; the address its controller publishes makes it Ready; losing it
// goes back.
func TestRoutingReadyFromIngressStatus(t *testing.T) {
	ns := namespace(t)
	sc := stickyCluster(ns, sessionv1.ControllerTraefik)
	sc.Spec.Apps = append(sc.Spec.Apps, sessionv1.AppSpec{Name: "api", Image: "example/api:1", Path: "/api"})
	create(t, sc)
	got := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)
	c := meta.FindStatusCondition(got.Status.Conditions, sessionv1.ConditionRoutingReady)
	if !strings.Contains(c.Message, "shop-web") || !strings.Contains(c.Message, "shop-api") || !strings.Contains(c.Message, "class public") {
		t.Errorf("RoutingPending message %q should name both Ingresses and the class", c.Message)
	}
	if r, _ := condition(t, ns, "shop", sessionv1.ConditionReady); r.Status != metav1.ConditionFalse || r.Reason != sessionv1.ReasonRoutingPending {
		t.Errorf("Ready with no ingress address: %+v", r)
	}

	// One of two addressed is not enough.
	publishIngressAddress(t, ns, "shop-web", "10.0.0.7")
	eventually(t, 20*time.Second, func() error {
		c, _ := condition(t, ns, "shop", sessionv1.ConditionRoutingReady)
		if c == nil || strings.Contains(c.Message, "shop-web") || !strings.Contains(c.Message, "shop-api") {
			return fmt.Errorf("RoutingReady %+v", c)
		}
		return nil
	})
	publishIngressAddress(t, ns, "shop-api", "10.0.0.7")
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonReady)

	// The controller withdraws the address (it stopped serving the class).
	publishIngressAddress(t, ns, "shop-api", "")
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)
}

// TestRoutingReadyFromRouteParents: an HTTPRoute is routed once every parent reports it
// Accepted with resolved references; a parent's refusal is RouteRejected.
func TestRoutingReadyFromRouteParents(t *testing.T) {
	installHTTPRouteCRD(t, "experimental")
	ns := namespace(t)
	sc := stickyCluster(ns, sessionv1.ControllerGatewayAPI)
	sc.Spec.Ingress.ClassName, sc.Spec.Ingress.TLS = nil, nil
	sc.Spec.Ingress.ParentRefs = []sessionv1.GatewayParentRef{{Name: "public", Namespace: "gateways", SectionName: "https"}}
	create(t, sc)
	eventually(t, 30*time.Second, func() error { return get(t, ns, "shop", &gatewayv1.HTTPRoute{}) })
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)

	reportRouteParents(t, ns, "shop", metav1.ConditionFalse, metav1.ConditionTrue)
	got := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRouteRejected)
	if c := meta.FindStatusCondition(got.Status.Conditions, sessionv1.ConditionRoutingReady); !strings.Contains(c.Message, "Gateway gateways/public (https)") ||
		!strings.Contains(c.Message, "NotAllowedByListeners") {
		t.Errorf("RouteRejected message %q", c.Message)
	}

	reportRouteParents(t, ns, "shop", metav1.ConditionTrue, metav1.ConditionFalse)
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRouteRejected)

	reportRouteParents(t, ns, "shop", metav1.ConditionTrue, metav1.ConditionTrue)
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonReady)

	// A reported status is about one generation: after a spec change the route is pending
	// until its Gateway has seen the new one.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		sc.Spec.Ingress.Host = "shop2.example.com"
		return k8s.Update(context.Background(), sc)
	}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)
	reportRouteParents(t, ns, "shop", metav1.ConditionTrue, metav1.ConditionTrue)
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonReady)
}
