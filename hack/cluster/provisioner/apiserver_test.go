package main

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sessionops/session-operator/internal/testenv"
)

// TestResizeOnRealAPIServer provisions a claim, binds it as the PV controller would, asks
// for more, and lets the provisioner resize it, all against a real kube-apiserver: its
// admission (only classes that allow expansion) and its validation of the claim's status
// are what the local cluster has.
func TestResizeOnRealAPIServer(t *testing.T) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cfg)
	p := &provisioner{client: cs, name: testName, root: t.TempDir(), node: "node-1"}
	for _, c := range []string{"expandable", "fixed"} {
		if _, err := cs.StorageV1().StorageClasses().Create(ctx, class(c, c == "expandable"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	bound := func(name, className string) *corev1.PersistentVolumeClaim {
		t.Helper()
		pvc, err := cs.CoreV1().PersistentVolumeClaims("ns").Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annProvisioner: testName}},
			Spec: corev1.PersistentVolumeClaimSpec{
				StorageClassName: ptr.To(className), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Status.Phase = corev1.ClaimPending
		if pvc, err = cs.CoreV1().PersistentVolumeClaims("ns").UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := p.once(ctx); err != nil {
			t.Fatal(err)
		}
		pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pvc-"+string(pvc.UID), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("no volume provisioned for %s: %v", name, err)
		}
		// What the PV controller does.
		pvc.Spec.VolumeName = pv.Name
		if pvc, err = cs.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, AccessModes: pvc.Spec.AccessModes,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
		if pvc, err = cs.CoreV1().PersistentVolumeClaims("ns").UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pv.Status.Phase = corev1.VolumeBound
		if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return pvc
	}
	grow := func(name string) error {
		_, err := cs.CoreV1().PersistentVolumeClaims("ns").Patch(ctx, name, types.MergePatchType,
			[]byte(`{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`), metav1.PatchOptions{})
		return err
	}

	bound("data-0", "expandable")
	if err := grow("data-0"); err != nil {
		t.Fatalf("asking an expandable class's claim for more: %v", err)
	}
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	if pv, pvc := sizes(t, p, "data-0"); pv != "2Gi" || pvc != "2Gi" {
		t.Errorf("after a pass: PV %s, claim status %s; want both 2Gi", pv, pvc)
	}
	// Nothing more to do on the next pass.
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}

	bound("data-1", "fixed")
	if err := grow("data-1"); err == nil {
		t.Error("the apiserver let a claim of a class without allowVolumeExpansion grow")
	}
}
