package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/render"
)

// CacheOptions caches only what the operator owns: every child kind is selected by the
// managed-by label, pods further by the store component, and managedFields are dropped.
// A cluster-wide cache of every Secret or Pod would cost memory in proportion to the
// cluster, not to the SessionClusters.
func CacheOptions(namespaces []string, httpRoutes bool) cache.Options {
	owned := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedBy})
	storePods := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedBy, render.LabelComponent: render.ComponentStore})
	byObject := map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: storePods, Transform: chain(cache.TransformStripManagedFields(), slimPod, internMeta)}}
	for _, obj := range ChildObjects() {
		// The map is keyed by pointer: one entry per kind, or the cache picks either.
		if _, isConfigMap := obj.(*corev1.ConfigMap); isConfigMap {
			byObject[obj] = cache.ByObject{Label: owned, Transform: chain(cache.TransformStripManagedFields(), apply.DigestConfigMapData, internMeta)}
			continue
		}
		switch obj.(type) {
		case *appsv1.StatefulSet, *appsv1.Deployment:
			byObject[obj] = cache.ByObject{Label: owned, Transform: chain(cache.TransformStripManagedFields(), apply.SlimWorkload, internMeta)}
			continue
		}
		byObject[obj] = cache.ByObject{Label: owned, Transform: chain(cache.TransformStripManagedFields(), internMeta)}
	}
	if httpRoutes {
		byObject[&gatewayv1.HTTPRoute{}] = cache.ByObject{Label: owned, Transform: chain(cache.TransformStripManagedFields(), internMeta)}
	}
	o := cache.Options{ByObject: byObject, DefaultTransform: chain(cache.TransformStripManagedFields(), internMeta)}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

// slimPod keeps of a store pod what the operator reads (labels, annotations, owners,
// deletion, readiness, phase): the role label, the rollout's revisions and readiness.
// The spec is the StatefulSet's, which the cache holds once. The StatefulSet's labels
// naming and numbering the pod repeat its name, and would take its label map past the
// eight entries a small Go map holds (twice the memory). Nothing lists pods by them, and
// the operator writes pods' labels by merge patch, which leaves labels it never saw alone.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	delete(pod.Labels, appsv1.StatefulSetPodNameLabel)
	delete(pod.Labels, appsv1.PodIndexLabel)
	return &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: pod.ObjectMeta,
		Status:     corev1.PodStatus{Phase: pod.Status.Phase, Conditions: pod.Status.Conditions, PodIP: pod.Status.PodIP},
	}, nil
}

// chain runs transforms in order; a ByObject transform replaces the default one, so the
// managedFields stripping is repeated in the chain. An object the chain has already
// transformed (internMeta, last, marks it packed) is left as it is: client-go may hand
// the same object to the transform twice, and a slimmed workload's digest taken again
// would be of the slimmed spec.
func chain(fns ...toolscache.TransformFunc) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if o, ok := obj.(metav1.Object); ok && packed(o) {
			return obj, nil
		}
		var err error
		for _, fn := range fns {
			if obj, err = fn(obj); err != nil {
				return nil, err
			}
		}
		return obj, nil
	}
}
