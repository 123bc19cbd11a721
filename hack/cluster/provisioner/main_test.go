package main

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

const testName = "sessionops.dev/local-path"

func class(name string, expand bool) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: testName, AllowVolumeExpansion: ptr.To(expand)}
}

// boundPair is a claim asking for want, bound to a PV of this provisioner holding have.
func boundPair(name, className, have, want string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "uid-" + types.UID(name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To(className), VolumeName: "pv-" + name,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(want)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{
			Phase:      corev1.ClaimBound,
			Capacity:   corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(have)},
			Conditions: []corev1.PersistentVolumeClaimCondition{{Type: corev1.PersistentVolumeClaimResizing, Status: corev1.ConditionTrue}},
		},
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name, Annotations: map[string]string{annProvisionedBy: testName}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(have)},
			StorageClassName: className,
			ClaimRef:         &corev1.ObjectReference{Namespace: "ns", Name: name},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeBound},
	}
	return pvc, pv
}

func sizes(t *testing.T, p *provisioner, name string) (pvCap, pvcCap string) {
	t.Helper()
	ctx := context.Background()
	pvc, err := p.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := p.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q, r := pv.Spec.Capacity[corev1.ResourceStorage], pvc.Status.Capacity[corev1.ResourceStorage]
	return q.String(), r.String()
}

func TestResizeGrowsVolumeAndClaim(t *testing.T) {
	grow, growPV := boundPair("grow", "expandable", "1Gi", "2Gi")
	fixed, fixedPV := boundPair("fixed", "fixed", "1Gi", "2Gi")
	done, donePV := boundPair("done", "expandable", "2Gi", "2Gi")
	objs := []runtime.Object{class("expandable", true), class("fixed", false), grow, growPV, fixed, fixedPV, done, donePV}
	p := &provisioner{client: fake.NewClientset(objs...), name: testName, root: t.TempDir(), node: "n"}

	if err := p.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pv, pvc := sizes(t, p, "grow"); pv != "2Gi" || pvc != "2Gi" {
		t.Errorf("expandable class: PV %s, claim status %s; want both 2Gi", pv, pvc)
	}
	got, _ := p.client.CoreV1().PersistentVolumeClaims("ns").Get(context.Background(), "grow", metav1.GetOptions{})
	if len(got.Status.Conditions) != 0 {
		t.Errorf("Resizing condition left on the grown claim: %+v", got.Status.Conditions)
	}
	if a := got.Status.AllocatedResources[corev1.ResourceStorage]; a.String() != "2Gi" {
		t.Errorf("allocatedResources %s, want 2Gi", a.String())
	}
	if pv, pvc := sizes(t, p, "fixed"); pv != "1Gi" || pvc != "1Gi" {
		t.Errorf("class without expansion: PV %s, claim status %s; want both left at 1Gi", pv, pvc)
	}

	// A PV raised on an earlier pass whose claim status was not written yet is finished.
	half, halfPV := boundPair("half", "expandable", "1Gi", "3Gi")
	halfPV.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("3Gi")
	p.client = fake.NewClientset(class("expandable", true), half, halfPV)
	if err := p.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pv, pvc := sizes(t, p, "half"); pv != "3Gi" || pvc != "3Gi" {
		t.Errorf("half-done resize: PV %s, claim status %s; want both 3Gi", pv, pvc)
	}
}

func TestResizeLeavesOtherProvisionersVolumes(t *testing.T) {
	pvc, pv := boundPair("theirs", "expandable", "1Gi", "2Gi")
	pv.Annotations[annProvisionedBy] = "someone.else/provisioner"
	p := &provisioner{client: fake.NewClientset(class("expandable", true), pvc, pv), name: testName, root: t.TempDir(), node: "n"}
	if err := p.once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pv, pvc := sizes(t, p, "theirs"); pv != "1Gi" || pvc != "1Gi" {
		t.Errorf("another provisioner's volume: PV %s, claim status %s; want both left at 1Gi", pv, pvc)
	}
}
