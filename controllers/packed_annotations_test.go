package controllers

import (
	"context"
	"maps"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

func TestPackedAnnotationsRoundTrip(t *testing.T) {
	for _, ann := range []map[string]string{
		{render.AnnotationSpecHash: "0123abcd"},
		{render.AnnotationSpecHash: "x", "example.com/owner": "team a/b", "empty": ""},
		{"kubectl.kubernetes.io/last-applied-configuration": `{"a":"b\u0001"}`, annotationPrefix + "x": "y"},
	} {
		m := &metav1.ObjectMeta{Annotations: maps.Clone(ann)}
		packAnnotations(m)
		if m.Annotations != nil {
			t.Fatalf("%v: not packed", ann)
		}
		unpackAnnotations(m)
		if !maps.Equal(m.Annotations, ann) || m.SelfLink != "" {
			t.Errorf("round trip of %v gave %v, selfLink %q", ann, m.Annotations, m.SelfLink)
		}
	}
	// A value that cannot be packed, and a real selfLink, are left as they are.
	m := &metav1.ObjectMeta{Annotations: map[string]string{"a": "b\x00c"}}
	if packAnnotations(m); m.Annotations["a"] != "b\x00c" || m.SelfLink != "" {
		t.Errorf("a value holding NUL was packed: %+v", m)
	}
	m = &metav1.ObjectMeta{SelfLink: "/api/v1/namespaces/a/services/b"}
	if unpackAnnotations(m); m.Annotations != nil || m.SelfLink == "" {
		t.Errorf("a real selfLink was unpacked: %+v", m)
	}
}

// The cache holds a child's annotations packed; what the reconciler reads through it has
// them whole.
func TestCacheReadsUnpackAnnotations(t *testing.T) {
	ns := namespace(t)
	create(t, storeCluster(ns))
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, "")
	ctx := context.Background()

	svc := &corev1.Service{}
	if err := mgrCache.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-store"}, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Annotations[render.AnnotationSpecHash] == "" || svc.SelfLink != "" {
		t.Errorf("read through the cache: annotations %v, selfLink %q", svc.Annotations, svc.SelfLink)
	}
	list := &corev1.ServiceList{}
	if err := mgrCache.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if s.Namespace == ns && s.Annotations[render.AnnotationSpecHash] == "" {
			t.Errorf("listed through the cache: %s has annotations %v", s.Name, s.Annotations)
		}
	}

	sts := &appsv1.StatefulSet{}
	if err := mgrCache.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-store"}, sts); err != nil {
		t.Fatal(err)
	}
	if sts.Spec.Template.Annotations[render.AnnotationConfigHash] == "" || sts.Spec.Template.SelfLink != "" {
		t.Errorf("a StatefulSet read through the cache: template annotations %v", sts.Spec.Template.Annotations)
	}

	inf, err := mgrCache.GetInformer(ctx, &corev1.Service{})
	if err != nil {
		t.Fatal(err)
	}
	held, ok, err := inf.(toolscache.SharedIndexInformer).GetStore().GetByKey(ns + "/shop-store")
	if err != nil || !ok {
		t.Fatalf("the informer holds no shop-store: %v", err)
	}
	if h := held.(*corev1.Service); h.Annotations != nil || h.SelfLink == "" {
		t.Errorf("the cache holds annotations %v, selfLink %q; want them packed", h.Annotations, h.SelfLink)
	}
}
