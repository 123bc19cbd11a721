package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// replaceIfImmutableChanged handles the StatefulSet fields the apiserver refuses to update
// (claim templates, service name, pod management). The StatefulSet is deleted with its
// pods orphaned and created again by the apply that follows; the new one adopts the
// running pods and their claims, so no server stops and no session is lost. Bigger claims
// are asked of the existing PVCs, which works where the StorageClass allows expansion.
// It returns true when current was deleted.
func (r *SessionClusterReconciler) replaceIfImmutableChanged(ctx context.Context, p *pass, desired, current client.Object) (bool, error) {
	want, ok := desired.(*appsv1.StatefulSet)
	if !ok || current == nil {
		return false, nil
	}
	have := current.(*appsv1.StatefulSet)
	if have.Spec.ServiceName == want.Spec.ServiceName &&
		have.Spec.PodManagementPolicy == want.Spec.PodManagementPolicy &&
		sameClaimTemplates(want.Spec.VolumeClaimTemplates, have.Spec.VolumeClaimTemplates) {
		return false, nil
	}
	orphan := metav1.DeletePropagationOrphan
	if err := r.Delete(ctx, have, &client.DeleteOptions{PropagationPolicy: &orphan, Preconditions: &metav1.Preconditions{UID: &have.UID}}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("replacing statefulset %s: %w", have.Name, err)
	}
	log.FromContext(ctx).Info("replaced statefulset to change immutable fields; its pods keep running", "statefulSet", have.Name)
	r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventStatefulSetReplaced, "Apply",
		"StatefulSet %s replaced (pods kept running) to change its volume claim templates or service", have.Name)
	if err := r.expandClaims(ctx, p, want, ptr.Deref(have.Spec.Replicas, 1)); err != nil {
		return true, err
	}
	return true, nil
}

// sameClaimTemplates compares what the user controls in the claim templates.
func sameClaimTemplates(want, have []corev1.PersistentVolumeClaim) bool {
	if len(want) != len(have) {
		return false
	}
	for i := range want {
		w, h := want[i].Spec, have[i].Spec
		if want[i].Name != have[i].Name ||
			!equality.Semantic.DeepEqual(w.Resources.Requests, h.Resources.Requests) ||
			(w.StorageClassName != nil && (h.StorageClassName == nil || *w.StorageClassName != *h.StorageClassName)) {
			return false
		}
	}
	return true
}

// expandClaims asks existing claims for the new size; a StorageClass without expansion
// refuses, which the user sees as an event while the store keeps running on the old size.
func (r *SessionClusterReconciler) expandClaims(ctx context.Context, p *pass, sts *appsv1.StatefulSet, replicas int32) error {
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		return nil
	}
	tmpl := sts.Spec.VolumeClaimTemplates[0]
	size := tmpl.Spec.Resources.Requests[corev1.ResourceStorage]
	for i := range replicas {
		pvc := &corev1.PersistentVolumeClaim{}
		key := client.ObjectKey{Namespace: sts.Namespace, Name: fmt.Sprintf("%s-%s-%d", tmpl.Name, sts.Name, i)}
		if err := r.APIReader.Get(ctx, key, pvc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading claim %s: %w", key.Name, err)
		}
		cur := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if cur.Cmp(size) >= 0 {
			continue
		}
		patch := client.MergeFrom(pvc.DeepCopy())
		pvc.Spec.Resources.Requests[corev1.ResourceStorage] = size
		if err := r.Patch(ctx, pvc, patch); err != nil {
			r.Events.Eventf(p.sc, nil, corev1.EventTypeWarning, sessionv1.EventClaimNotExpanded, "Apply",
				"Claim %s stays at %s: %v", key.Name, cur.String(), err)
		}
	}
	return nil
}
