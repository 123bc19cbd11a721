package controllers

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
)

func TestSlimPodKeepsWhatTheOperatorReads(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-store-1", Labels: map[string]string{
			render.LabelName: "redis", render.LabelInstance: "shop", render.LabelComponent: render.ComponentStore,
			render.LabelPartOf: "session-operator", render.LabelManagedBy: render.ManagedBy, render.LabelRole: render.RolePrimary,
			appsv1.ControllerRevisionHashLabelKey: "shop-store-5d8", appsv1.StatefulSetPodNameLabel: "shop-store-1", appsv1.PodIndexLabel: "1",
		}},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.0"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.5", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	out, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := out.(*corev1.Pod)
	if len(slim.Labels) != 7 || slim.Labels[render.LabelRole] != render.RolePrimary || slim.Labels[appsv1.ControllerRevisionHashLabelKey] != "shop-store-5d8" {
		t.Errorf("labels %v: want the role and revision, without the pod's name and index", slim.Labels)
	}
	if len(slim.Spec.Containers) != 0 || slim.Status.PodIP != "10.0.0.5" || !podReady(slim) {
		t.Errorf("slimmed pod: %+v", slim)
	}
}

// client-go runs a transform twice on what a streamed initial list returns, so every
// transform the cache is configured with must leave an object it already transformed as
// it is. A workload's spec digest taken twice was the slimmed spec's, and a restarted
// manager rewrote every workload.
func TestCacheTransformsAreIdempotent(t *testing.T) {
	opts := CacheOptions(nil, false)
	transformFor := func(obj client.Object) toolscache.TransformFunc {
		for k, v := range opts.ByObject {
			if reflect.TypeOf(k) == reflect.TypeOf(obj) {
				return v.Transform
			}
		}
		return opts.DefaultTransform
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "team1", Labels: map[string]string{render.LabelInstance: "shop"},
			Annotations:     map[string]string{render.AnnotationSpecHash: "abc"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "session-operator"}},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "SessionCluster", Name: "shop", UID: "u1"}}}
	}
	template := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{render.LabelInstance: "shop"}, Annotations: map[string]string{render.AnnotationConfigHash: "c1"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.0"}}},
	}
	for _, obj := range []client.Object{
		&appsv1.StatefulSet{ObjectMeta: meta("shop-store"), Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Template: template}},
		&appsv1.Deployment{ObjectMeta: meta("shop-web"), Spec: appsv1.DeploymentSpec{Template: template}},
		&corev1.ConfigMap{ObjectMeta: meta("shop-store-config"), Data: map[string]string{"redis.conf": "port 6379"}},
		&corev1.Service{ObjectMeta: meta("shop-store"), Spec: corev1.ServiceSpec{Selector: map[string]string{render.LabelInstance: "shop"}}},
		&corev1.Pod{ObjectMeta: meta("shop-store-0"), Spec: template.Spec},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "no-annotations", Namespace: "team1"}, Data: map[string][]byte{"a": []byte("b")}},
	} {
		fn := transformFor(obj)
		once, err := fn(obj.DeepCopyObject())
		if err != nil {
			t.Fatal(err)
		}
		twice, err := fn(once.(runtime.Object).DeepCopyObject())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(once, twice) {
			t.Errorf("%T: transformed twice differs from once:\n once %+v\ntwice %+v", obj, once, twice)
		}
		read := twice.(client.Object)
		unpack(read)
		if obj.GetAnnotations()[render.AnnotationSpecHash] != read.GetAnnotations()[render.AnnotationSpecHash] {
			t.Errorf("%T: read back with annotations %v", obj, read.GetAnnotations())
		}
	}
}
