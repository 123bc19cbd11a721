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
	// Any bytes, and no annotations at all, come back as they were.
	m := &metav1.ObjectMeta{Annotations: map[string]string{"a": "b\x00c\x01", annotationPrefix + "\x01": ""}}
	want := maps.Clone(m.Annotations)
	if packAnnotations(m); !packed(m) || m.Annotations != nil {
		t.Errorf("not packed: %+v", m)
	}
	if unpackAnnotations(m); !maps.Equal(m.Annotations, want) {
		t.Errorf("round trip of %q gave %q", want, m.Annotations)
	}
	m = &metav1.ObjectMeta{}
	if packAnnotations(m); !packed(m) {
		t.Error("an object without annotations is not marked")
	}
	if unpackAnnotations(m); m.Annotations != nil || m.SelfLink != "" {
		t.Errorf("an object without annotations came back as %+v", m)
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

	// A cache started over objects that exist gets them from one streamed list, which
	// client-go transforms twice; what it reads is the same.
	fresh, err := NewCache(restConfig, CacheOptions([]string{ns}, false))
	if err != nil {
		t.Fatal(err)
	}
	freshCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = fresh.Start(freshCtx) }()
	if !fresh.WaitForCacheSync(ctx) {
		t.Fatal("the fresh cache never started")
	}
	again := &appsv1.StatefulSet{}
	if err := fresh.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-store"}, again); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(again.Annotations, sts.Annotations) || !maps.Equal(again.Spec.Template.Annotations, sts.Spec.Template.Annotations) {
		t.Errorf("a cache started later reads annotations %v, template %v; the manager's %v, %v",
			again.Annotations, again.Spec.Template.Annotations, sts.Annotations, sts.Spec.Template.Annotations)
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
