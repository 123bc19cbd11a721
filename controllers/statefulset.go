package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
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
	// The claims themselves are asked for the new size by growClaims, every pass.
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

// growClaims asks every server's claim for spec.store.persistence.size, on every pass
// until each has it (a refusal, say a StorageClass without expansion, is asked again:
// the user may fix the class), and says in status where it stands: how many claims have
// the size, how many are pending, and why.
func (r *SessionClusterReconciler) growClaims(ctx context.Context, p *pass) error {
	if !p.spec.HasStore() || p.spec.Store.Persistence == nil || p.problem != nil {
		return nil
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	size := p.spec.Store.Persistence.Size
	st := &sessionv1.ClaimsStatus{Size: size.String()}
	replicas := render.StoreServers(p.spec.Store)
	if p.storeReplicas != nil {
		replicas = max(replicas, *p.storeReplicas)
	}
	if prev := previousClaims(p.sc); prev != nil && prev.Size == st.Size && prev.Pending == 0 && prev.Resized >= replicas {
		// Every claim had the size when last read: a claim never shrinks, and one made
		// since comes from the StatefulSet's template, which asks for the size.
		p.claims = prev.DeepCopy()
		return nil
	}
	var why []string
	for i := range replicas {
		pvc := &corev1.PersistentVolumeClaim{}
		key := client.ObjectKey{Namespace: p.sc.Namespace, Name: fmt.Sprintf("%s-%s-%d", render.ClaimTemplateName, n.Store(), i)}
		if err := r.APIReader.Get(ctx, key, pvc); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the StatefulSet makes it with the new size
			}
			return fmt.Errorf("reading claim %s: %w", key.Name, err)
		}
		req := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if req.Cmp(size) < 0 {
			patch := client.MergeFrom(pvc.DeepCopy())
			if pvc.Spec.Resources.Requests == nil {
				pvc.Spec.Resources.Requests = corev1.ResourceList{}
			}
			pvc.Spec.Resources.Requests[corev1.ResourceStorage] = size
			if err := r.Patch(ctx, pvc, patch); err != nil {
				st.Pending++
				why = append(why, fmt.Sprintf("claim %s stays at %s: %v", key.Name, req.String(), err))
				continue
			}
		}
		if capacity, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok && capacity.Cmp(size) >= 0 {
			st.Resized++
			continue
		}
		st.Pending++
		capacity := pvc.Status.Capacity[corev1.ResourceStorage]
		why = append(why, fmt.Sprintf("claim %s asks for %s, its volume has %s", key.Name, size.String(), capacity.String()))
	}
	st.Message = truncate(strings.Join(why, "; "), 1024)
	p.claims = st
	if st.Message != "" && strings.Contains(st.Message, " stays at ") {
		prev := ""
		if c := previousClaims(p.sc); c != nil {
			prev = c.Message
		}
		if prev != st.Message {
			r.Events.Eventf(p.sc, nil, corev1.EventTypeWarning, sessionv1.EventClaimNotExpanded, "Apply", "%s", st.Message)
		}
	}
	return nil
}

// previousClaims is the claims' standing as the last status recorded it, or nil.
func previousClaims(sc *sessionv1.SessionCluster) *sessionv1.ClaimsStatus {
	if sc.Status.Store == nil {
		return nil
	}
	return sc.Status.Store.Claims
}
