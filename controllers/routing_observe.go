package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways;gatewayclasses,verbs=get

// observeRouting finds out whether cookie affinity through a Gateway API route can work:
// the installed HTTPRoute schema must carry sessionPersistence, and the parent Gateways'
// classes must not declare features that leave it out.
func (r *SessionClusterReconciler) observeRouting(ctx context.Context, p *pass) error {
	in := p.spec.Ingress
	if in == nil || in.Controller != sessionv1.ControllerGatewayAPI || p.spec.Mode != sessionv1.ModeSticky || !p.inputs.GatewayAPI {
		return nil
	}
	if !p.inputs.GatewaySessionPersistence {
		p.routingUnsupported = "the installed HTTPRoute CRD has no sessionPersistence (the standard channel of the Gateway API leaves it out, and the apiserver drops it on write), so users are not pinned; install the experimental-channel HTTPRoute CRD, or use an Ingress controller"
		return nil
	}
	var lacking []string
	for _, ref := range in.ParentRefs {
		ns := ref.Namespace
		if ns == "" {
			ns = p.sc.Namespace
		}
		class, features, err := r.gatewayClassFeatures(ctx, ns, ref.Name)
		if err != nil {
			return err
		}
		// A class that publishes no features says nothing either way.
		if len(features) == 0 || slices.ContainsFunc(features, func(f string) bool { return strings.Contains(f, "SessionPersistence") }) {
			continue
		}
		lacking = append(lacking, fmt.Sprintf("GatewayClass %s (of Gateway %s/%s)", class, ns, ref.Name))
	}
	if len(lacking) > 0 {
		p.routingUnsupported = strings.Join(lacking, ", ") + " lists its supported features in status.supportedFeatures and session persistence is not among them: the route is accepted but users are not pinned; use a Gateway implementation that supports it, or an Ingress controller"
	}
	return nil
}

// gatewayClassFeatures reads a parent Gateway and its class around the cache (they are not
// the operator's objects). A Gateway or class that is missing, or that these rights cannot
// read (a namespace-scoped install cannot read cluster-scoped classes), yields no features.
func (r *SessionClusterReconciler) gatewayClassFeatures(ctx context.Context, ns, name string) (string, []string, error) {
	gw := &gatewayv1.Gateway{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, gw); err != nil {
		return "", nil, ignoreUnreadable(ctx, err, "gateway", ns+"/"+name)
	}
	gc := &gatewayv1.GatewayClass{}
	class := string(gw.Spec.GatewayClassName)
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: class}, gc); err != nil {
		return class, nil, ignoreUnreadable(ctx, err, "gatewayClass", class)
	}
	var out []string
	for _, f := range gc.Status.SupportedFeatures {
		out = append(out, string(f.Name))
	}
	return class, out, nil
}

func ignoreUnreadable(ctx context.Context, err error, kind, name string) error {
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || meta.IsNoMatchError(err) {
		log.FromContext(ctx).V(1).Info("cannot read the route's parent", kind, name, "reason", err.Error())
		return nil
	}
	return fmt.Errorf("reading %s %s: %w", kind, name, err)
}
