package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// observeStore reads the store's workloads and asks its Sentinels who the primary is,
// then keeps the role label the primary Service selects on.
func (r *SessionClusterReconciler) observeStore(ctx context.Context, p *pass) error {
	if !p.spec.HasStore() {
		return nil
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	if p.spec.Sharded() {
		// Redis Cluster names each shard's primary itself; there is no Sentinel to ask and
		// no primary Service whose role label would need keeping.
		return r.observeCluster(ctx, p, n)
	}
	var err error
	if p.storeSet, err = r.getStatefulSet(ctx, p.sc.Namespace, n.Store()); err != nil {
		return err
	}
	if p.sentinelSet, err = r.getStatefulSet(ctx, p.sc.Namespace, n.Sentinel()); err != nil {
		return err
	}
	p.storeObserved = p.storeSet == nil || p.sentinelSet == nil || p.inputs.Internal.Operator != ""
	if p.storeSet == nil || p.sentinelSet == nil || p.inputs.Internal.Operator == "" {
		return nil
	}
	target := store.Target{
		Cluster:    client.ObjectKeyFromObject(p.sc),
		MasterName: n.MasterName(),
		Sentinels:  render.HostPorts(n.SentinelHosts(p.spec.Store.Sentinel.Replicas), render.SentinelPort),
		Username:   render.UserOperator,
		Password:   p.inputs.Internal.Operator,
	}
	var obs store.Observation
	if tr, ok := r.Observer.(store.Tracker); ok {
		// Observed off the reconcile path: read the latest, dial nothing. Before the first
		// assessment the store counts as not observed yet; the tracker wakes this
		// SessionCluster when it is done.
		var seen bool
		obs, err, seen = tr.Latest(target)
		if !seen && err == nil {
			p.storeObserved = false
			return nil
		}
	} else {
		obs, err = r.Observer.Observe(ctx, target)
	}
	p.observed, p.observeErr = &obs, err
	if err != nil {
		log.FromContext(ctx).V(1).Info("store not observed", "reason", err.Error())
	}
	if obs.PrimaryHost == "" {
		return nil
	}
	return r.labelRoles(ctx, p, render.PodFromHost(obs.PrimaryHost))
}

// labelRoles marks the primary pod primary and every other server replica, so that the
// primary Service follows a failover.
func (r *SessionClusterReconciler) labelRoles(ctx context.Context, p *pass, primary string) error {
	pods := &corev1.PodList{}
	sel := render.Selector(p.sc, render.ComponentStore)
	if err := r.List(ctx, pods, client.InNamespace(p.sc.Namespace), client.MatchingLabels(sel)); err != nil {
		return fmt.Errorf("listing store pods: %w", err)
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		want := render.RoleReplica
		if pod.Name == primary {
			want = render.RolePrimary
		}
		if pod.Labels[render.LabelRole] == want {
			continue
		}
		patch := client.MergeFrom(pod.DeepCopy())
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[render.LabelRole] = want
		if err := r.Patch(ctx, pod, patch); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("labelling store pod %s %s: %w", pod.Name, want, err)
		}
	}
	return nil
}

// observeApps reads each app's Deployment.
func (r *SessionClusterReconciler) observeApps(ctx context.Context, p *pass) error {
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	found := map[string]*appsv1.Deployment{}
	for _, app := range p.spec.Apps {
		d := &appsv1.Deployment{}
		err := r.Get(ctx, client.ObjectKey{Namespace: p.sc.Namespace, Name: n.App(app.Name)}, d)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading deployment of app %s: %w", app.Name, err)
		}
		found[app.Name] = d
	}
	p.deployments = found
	return nil
}

func (r *SessionClusterReconciler) getStatefulSet(ctx context.Context, ns, name string) (*appsv1.StatefulSet, error) {
	s := &appsv1.StatefulSet{}
	err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading statefulset %s: %w", name, err)
	}
	return s, nil
}
