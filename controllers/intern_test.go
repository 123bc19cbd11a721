package controllers

import (
	"reflect"
	"testing"
	"unsafe"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestInternMetaSharesRepeatedStrings(t *testing.T) {
	mk := func() *corev1.Service {
		// Fresh copies of the bytes, as the decoder makes them.
		s := func(x string) string { return string([]byte(x)) }
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Name: "shop-store", Namespace: s("team1"),
				Labels:          map[string]string{s("app.kubernetes.io/instance"): s("shop")},
				Annotations:     map[string]string{s("session.sessionops.dev/spec-hash"): s("abc")},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: s("session.sessionops.dev/v1alpha1"), Kind: s("SessionCluster"), Name: s("shop"), UID: "u1"}},
			},
			Spec: corev1.ServiceSpec{Selector: map[string]string{s("app.kubernetes.io/instance"): s("shop")}},
		}
	}
	a, b := mk(), mk()
	for _, o := range []*corev1.Service{a, b} {
		if _, err := internMeta(o); err != nil {
			t.Fatal(err)
		}
	}
	same := func(what, x, y string) {
		if x != y || unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s not shared: %q, %q", what, x, y)
		}
	}
	same("namespace", a.Namespace, b.Namespace)
	same("label value", a.Labels["app.kubernetes.io/instance"], b.Labels["app.kubernetes.io/instance"])
	same("selector value", a.Spec.Selector["app.kubernetes.io/instance"], b.Spec.Selector["app.kubernetes.io/instance"])
	same("owner name", a.OwnerReferences[0].Name, b.OwnerReferences[0].Name)
	same("owner kind", a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind)
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() ||
		reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(a.Spec.Selector).UnsafePointer() {
		t.Error("equal label maps and selectors not shared")
	}
	if &a.OwnerReferences[0] != &b.OwnerReferences[0] {
		t.Error("equal owner references not shared")
	}
	if c := shared.labels(map[string]string{"app.kubernetes.io/instance": "other"}); c["app.kubernetes.io/instance"] != "other" || len(c) != 1 {
		t.Errorf("a different label map came back as %v", c)
	}
	if a.Annotations != nil || a.SelfLink == "" {
		t.Errorf("annotations not packed: %v, selfLink %q", a.Annotations, a.SelfLink)
	}
	if unpackAnnotations(a); a.Annotations["session.sessionops.dev/spec-hash"] != "abc" || len(a.Annotations) != 1 {
		t.Errorf("annotations changed: %v", a.Annotations)
	}

	// A workload's selector and pod template labels are the same map as the Service's.
	sts := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "shop"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/instance": "shop"}}},
	}}
	if _, err := internMeta(sts); err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(sts.Spec.Selector.MatchLabels).UnsafePointer() != reflect.ValueOf(a.Labels).UnsafePointer() ||
		reflect.ValueOf(sts.Spec.Template.Labels).UnsafePointer() != reflect.ValueOf(a.Labels).UnsafePointer() {
		t.Error("a workload's selector and template labels are not shared")
	}
}
