// Package uninstall empties the cluster of SessionClusters before the operator goes away.
//
// The chart runs it as a pre-delete hook while the manager still runs. Deleting the CRD
// deletes every SessionCluster anyway, but a SessionCluster that wired a user's own
// workload carries a finalizer that only the manager removes, after it has taken its
// wiring off the workload. Once helm has deleted the manager, such a SessionCluster can
// never go, and neither can the CRD: `helm uninstall --wait` hangs and the namespace with
// it. Deleting the SessionClusters first lets the manager unwire every workload and
// collect every store, as if the user had deleted each one.
package uninstall

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/controllers"
)

const finalizerUnwire = controllers.FinalizerUnwire

// Options says where to look and how long to wait for the manager.
type Options struct {
	// Namespaces limits the cleanup to these namespaces; empty means all.
	Namespaces []string
	// Timeout bounds the wait for the manager to finalize what was deleted. After it,
	// finalizers are removed so that the uninstall can finish; the workloads they guarded
	// keep their wiring, and each is logged.
	Timeout time.Duration
	// Poll is how often the wait looks again.
	Poll time.Duration
}

// Run deletes every SessionCluster in scope, waits for the manager to finalize them, and
// removes the finalizers of those still there after the timeout. It fails only when the
// apiserver cannot be read or written.
func Run(ctx context.Context, c client.Client, o Options) error {
	logger := log.FromContext(ctx)
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	left, err := list(ctx, c, o.Namespaces)
	if err != nil {
		return err
	}
	for i := range left {
		sc := &left[i]
		if err := c.Delete(ctx, sc, client.PropagationPolicy("Background")); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting SessionCluster %s/%s: %w", sc.Namespace, sc.Name, err)
		}
	}
	logger.Info("deleted SessionClusters", "count", len(left))

	deadline := time.Now().Add(o.Timeout)
	for len(left) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.Poll):
		}
		if left, err = list(ctx, c, o.Namespaces); err != nil {
			return err
		}
	}
	for i := range left {
		if err := release(ctx, c, &left[i]); err != nil {
			return err
		}
	}
	return nil
}

// release removes the finalizer the manager did not get to remove in time. The workload it
// guarded keeps the wiring to a store that is now going away; the log says which, so the
// user can take it off by hand.
func release(ctx context.Context, c client.Client, sc *sessionv1.SessionCluster) error {
	if !controllerutil.ContainsFinalizer(sc, finalizerUnwire) {
		return nil
	}
	var wired []string
	for _, a := range sc.Spec.Apps {
		if w := a.WorkloadRef; w != nil {
			wired = append(wired, string(w.Kind)+"/"+w.Name)
			if err := warn(ctx, c, sc, w); err != nil {
				log.FromContext(ctx).Error(err, "recording an event on the workload", "workload", string(w.Kind)+"/"+w.Name)
			}
		}
	}
	log.FromContext(ctx).Info("the manager did not unwire in time; removing the finalizer, the workloads keep their wiring",
		"sessionCluster", sc.Namespace+"/"+sc.Name, "workloads", wired)
	base := sc.DeepCopy()
	sc.Finalizers = slices.DeleteFunc(sc.Finalizers, func(f string) bool { return f == finalizerUnwire })
	if err := c.Patch(ctx, sc, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the finalizer of SessionCluster %s/%s: %w", sc.Namespace, sc.Name, err)
	}
	return nil
}

// warn records on the workload itself, which outlives the operator and this Job, that it
// still carries the wiring to a store that is being deleted.
func warn(ctx context.Context, c client.Client, sc *sessionv1.SessionCluster, w *sessionv1.WorkloadReference) error {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: sc.Namespace, GenerateName: w.Name + "."},
		InvolvedObject: corev1.ObjectReference{APIVersion: "apps/v1", Kind: string(w.Kind), Namespace: sc.Namespace, Name: w.Name},
		Type:           corev1.EventTypeWarning,
		Reason:         "WiringLeft",
		Message: fmt.Sprintf("SessionCluster %s was deleted at uninstall before the operator could unwire this workload: "+
			"remove its SESSION_REDIS_*/REDIS_* env, its session.sessionops.dev/ labels and annotations by hand", sc.Name),
		Source:         corev1.EventSource{Component: "session-operator-uninstall"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	return c.Create(ctx, ev)
}

func list(ctx context.Context, c client.Client, namespaces []string) ([]sessionv1.SessionCluster, error) {
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	var out []sessionv1.SessionCluster
	for _, ns := range namespaces {
		var l sessionv1.SessionClusterList
		if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing SessionClusters in %q: %w", ns, err)
		}
		out = append(out, l.Items...)
	}
	return out, nil
}
