package apply

import (
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
)

// AnnotationDataDigest is set by the cache, never on the server: the digest of a cached
// ConfigMap's data, which the cache drops. The store's ConfigMaps carry its scripts, the
// largest thing the operator would otherwise keep in memory per SessionCluster.
const AnnotationDataDigest = "session.sessionops.dev/cached-data-digest"

// DigestConfigMapData is a cache transform replacing a ConfigMap's data by its digest.
// Drift is still seen: an edit changes the digest.
func DigestConfigMapData(obj any) (any, error) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || (len(cm.Data) == 0 && len(cm.BinaryData) == 0) {
		return obj, nil
	}
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[AnnotationDataDigest] = dataDigest(cm)
	cm.Data, cm.BinaryData = nil, nil
	return cm, nil
}

func dataDigest(cm *corev1.ConfigMap) string {
	return render.Hash([2]any{cm.Data, cm.BinaryData})
}

// digestedMatches reports, for a ConfigMap whose data the cache replaced by a digest,
// whether the desired data has that digest. ok is false when current was not digested.
func digestedMatches(desired, current any) (match, ok bool) {
	have, isCM := current.(*corev1.ConfigMap)
	want, isWant := desired.(*corev1.ConfigMap)
	if !isCM || !isWant {
		return false, false
	}
	digest, digested := have.Annotations[AnnotationDataDigest]
	if !digested {
		return false, false
	}
	return dataDigest(want) == digest, true
}

// AnnotationSpecDigest is set by the cache, never on the server: the digest of a cached
// StatefulSet's or Deployment's whole spec, whose pod template spec the cache drops. The
// pod templates (containers, probes, volumes, affinity, as defaulted by the apiserver)
// are most of what the operator would otherwise keep in memory per SessionCluster.
const AnnotationSpecDigest = "session.sessionops.dev/cached-spec-digest"

// SlimWorkload is a cache transform that replaces a StatefulSet's or Deployment's pod
// template spec by a digest of its spec. What the operator reads from cached workloads
// stays: replicas, the template's metadata, claim templates, status.
func SlimWorkload(obj any) (any, error) {
	switch w := obj.(type) {
	case *appsv1.StatefulSet:
		setCacheAnnotation(&w.ObjectMeta, AnnotationSpecDigest, render.Hash(w.Spec))
		w.Spec.Template.Spec = corev1.PodSpec{}
	case *appsv1.Deployment:
		setCacheAnnotation(&w.ObjectMeta, AnnotationSpecDigest, render.Hash(w.Spec))
		w.Spec.Template.Spec = corev1.PodSpec{}
	}
	return obj, nil
}

func setCacheAnnotation(m *metav1.ObjectMeta, key, value string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[key] = value
}

// specDigestOf is the digest SlimWorkload records, of a whole object; "" for other kinds.
func specDigestOf(obj client.Object) string {
	switch w := obj.(type) {
	case *appsv1.StatefulSet:
		return render.Hash(w.Spec)
	case *appsv1.Deployment:
		return render.Hash(w.Spec)
	}
	return ""
}

// Verified remembers, by object UID, the spec digest of slimmed workloads last found (or
// written) carrying everything the operator wants. While the cached digest is the same
// and the operator's intent (the spec-hash) has not changed, the workload is up to date
// without reading it; otherwise it is read whole, once, from the apiserver. A restarted
// manager reads each of its workloads once.
type Verified struct {
	mu sync.Mutex
	m  map[types.UID]string
}

// NewVerified returns an empty record.
func NewVerified() *Verified { return &Verified{m: map[types.UID]string{}} }

func (v *Verified) has(uid types.UID, digest string) bool {
	if v == nil || uid == "" || digest == "" {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[uid] == digest
}

func (v *Verified) put(uid types.UID, digest string) {
	if v == nil || uid == "" || digest == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[uid] = digest
}

// Forget drops what is remembered of a deleted object.
func (v *Verified) Forget(uid types.UID) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, uid)
}
