package apply

import (
	corev1 "k8s.io/api/core/v1"

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
