package install

import (
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// TestClaimGrowthWithChartRBAC grows the servers' claims with the manager running under
// the chart's RBAC (impersonated ServiceAccount), persistence on. envtest has no
// StatefulSet controller, volume binder or resizer, so the test plays them: it makes the
// claims, binds them, and later reports the grown capacity. The StorageClass first refuses
// expansion (the admission plugin says so), and the manager must keep asking until the
// class allows it; status says where the claims stand at each stage.
func TestClaimGrowthWithChartRBAC(t *testing.T) {
	bin := managerBinary(t)
	release, system, ns := "rbac-claims", "rbac-claims-system", "rbac-claims-web"
	ensureNamespace(t, system)
	ensureNamespace(t, ns)
	objs := helmTemplate(t, release, system, "--set", "crds.enabled=false", "--set", "rbac.aggregateToDefaultRoles=false")
	var sa string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetName()
			fallthrough
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := apply(ctx(t), o, false); err != nil {
				t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", system, sa)
	waitAllowed(t, user, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Resource: "persistentvolumeclaims"})
	m := startManager(t, bin, containerArgs(t, must(t, objs, "Deployment", system, release+"-session-operator")), user)
	m.waitFor(t, 2*time.Minute, `"Starting workers"`, func() bool { return strings.Contains(m.logs.String(), "Starting workers") })

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	class := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: "rbac-claims-class"},
		Provisioner:          "example.com/none",
		AllowVolumeExpansion: ptr.To(false),
	}
	if _, err := cs.StorageV1().StorageClasses().Create(ctx(t), class, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	create(t, ns, "shop", map[string]any{
		"mode": "Store",
		"apps": []any{map[string]any{"name": "web", "image": "example/shop:1"}},
		"store": map[string]any{"replicas": int64(3), "persistence": map[string]any{
			"size": "1Gi", "storageClassName": class.Name}},
	})
	waitFor(t, time.Minute, "the store StatefulSet", func() error {
		_, err := cs.AppsV1().StatefulSets(ns).Get(ctx(t), "shop-store", metav1.GetOptions{})
		return err
	})
	// The StatefulSet controller's and the binder's part: three bound 1Gi claims.
	for i := 0; i < 3; i++ {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data-shop-store-%d", i), Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To(class.Name),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx(t), pvc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound,
			AccessModes: pvc.Spec.AccessModes, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx(t), pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The StatefulSet controller makes pods beside its claims, and their events wake the
	// SessionCluster (claims are not watched). This test makes no pods, so it touches the
	// SessionCluster instead; without that, the claims were seen only when a pass of the
	// first burst happened to come after them (it failed twice under load).
	touch := []byte(`{"metadata":{"annotations":{"test.sessionops.dev/claims-made":"true"}}}`)
	if _, err := dyn.Resource(sessionClusters).Namespace(ns).Patch(ctx(t), "shop", types.MergePatchType, touch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "claims reported at 1Gi", func() error {
		return claimsAre(t, ns, "1Gi", 3, 0, "")
	})

	// Grow to 2Gi: the StatefulSet is replaced around its pods (claim templates are
	// immutable); envtest has no garbage collector to release it.
	patch := []byte(`{"spec":{"store":{"persistence":{"size":"2Gi"}}}}`)
	if _, err := dyn.Resource(sessionClusters).Namespace(ns).Patch(ctx(t), "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	old, err := cs.AppsV1().StatefulSets(ns).Get(ctx(t), "shop-store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the StatefulSet replaced", func() error {
		cur, err := cs.AppsV1().StatefulSets(ns).Get(ctx(t), "shop-store", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != old.UID {
			return nil
		}
		if cur.DeletionTimestamp != nil && len(cur.Finalizers) > 0 {
			cur.Finalizers = nil
			_, err = cs.AppsV1().StatefulSets(ns).Update(ctx(t), cur, metav1.UpdateOptions{})
		}
		return fmt.Errorf("not replaced yet (%v)", err)
	})
	// The class refuses expansion: every claim pending, and why.
	waitFor(t, time.Minute, "claims refused", func() error {
		return claimsAre(t, ns, "2Gi", 0, 3, "stays at 1Gi")
	})
	// Once the class allows it, the manager's next try goes through.
	class, err = cs.StorageV1().StorageClasses().Get(ctx(t), class.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	class.AllowVolumeExpansion = ptr.To(true)
	if _, err := cs.StorageV1().StorageClasses().Update(ctx(t), class, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "claims asked for 2Gi", func() error {
		for i := 0; i < 3; i++ {
			pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), fmt.Sprintf("data-shop-store-%d", i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" {
				return fmt.Errorf("%s asks for %s", pvc.Name, q.String())
			}
		}
		return claimsAre(t, ns, "2Gi", 0, 3, "its volume has 1Gi")
	})
	// The resizer's part: the volumes grew.
	for i := 0; i < 3; i++ {
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx(t), fmt.Sprintf("data-shop-store-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx(t), pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "claims grown", func() error {
		return claimsAre(t, ns, "2Gi", 3, 0, "")
	})
	for _, line := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(line, "forbidden: User") {
			t.Errorf("the manager was refused something with the chart's RBAC: %s", line)
		}
	}
}

// claimsAre checks status.store.claims.
func claimsAre(t *testing.T, ns, size string, resized, pending int64, message string) error {
	sc, err := dyn.Resource(sessionClusters).Namespace(ns).Get(ctx(t), "shop", metav1.GetOptions{})
	if err != nil {
		return err
	}
	c, _, _ := unstructured.NestedMap(sc.Object, "status", "store", "claims")
	if c == nil {
		return fmt.Errorf("no status.store.claims")
	}
	if c["size"] != size || c["resized"] != resized || c["pending"] != pending {
		return fmt.Errorf("claims status %v, want size %s resized %d pending %d", c, size, resized, pending)
	}
	msg, _ := c["message"].(string)
	if (message == "") != (msg == "") || !strings.Contains(msg, message) {
		return fmt.Errorf("claims message %q, want %q", msg, message)
	}
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
