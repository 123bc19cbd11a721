package install

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/testenv"
)

// TestKustomizeDefaultAppliesOnAPIServer builds config/default with `kubectl kustomize`
// (the kubectl envtest uses) and applies every object with a strict server-side dry run
// into session-system.
func TestKustomizeDefaultAppliesOnAPIServer(t *testing.T) {
	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", filepath.Join(root, "config", "default"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, stderrOf(err))
	}
	objs, err := decode(out)
	if err != nil {
		t.Fatalf("decoding kubectl kustomize output: %v", err)
	}
	const ns = "session-system"

	// The Namespace is created for real (a dry run cannot hold what is applied into it),
	// with the labels kustomize gives it, which enforce the restricted standard.
	nsObj := must(t, objs, "Namespace", "", ns)
	if nsObj.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", ns)
	}
	if err := apply(ctx(t), nsObj, false); err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	dryRunAll(t, objs)

	for _, o := range objs {
		m, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err == nil && m.Scope.Name() == "namespace" && o.GetNamespace() != ns {
			t.Errorf("%s %s is in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
		}
	}
	must(t, objs, "CustomResourceDefinition", "", crdName)
	must(t, objs, "ClusterRole", "", "session-operator-manager-role")
	crb := must(t, objs, "ClusterRoleBinding", "", "session-operator-manager-rolebinding")
	checkSubject(t, crb, ns)
	sameRules(t, must(t, objs, "ClusterRole", "", "session-operator-manager-role"),
		rulesOf(t, filepath.Join(root, "config", "rbac", "role.yaml"), "manager-role"), "role.yaml")
	must(t, objs, "Role", ns, "session-operator-leader-election-role")
	must(t, objs, "Service", ns, "session-operator-controller-manager-metrics")

	d := must(t, objs, "Deployment", ns, "session-operator-controller-manager")
	if img := managerContainer(t, d)["image"]; img != "ghcr.io/sessionops/session-operator:dev" {
		t.Errorf("the manager's image is %v, want ghcr.io/sessionops/session-operator:dev (make image-tar)", img)
	}
	labels := d.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"]
	for k, v := range render.DefaultOperatorPodLabels {
		if l, _ := labels.(map[string]any); l[k] != v {
			t.Errorf("the manager's pods lack %s=%s, by which the stores' NetworkPolicies admit the operator", k, v)
		}
	}
	if sa := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["serviceAccountName"]; !reflect.DeepEqual(sa, "session-operator-controller-manager") {
		t.Errorf("serviceAccountName %v", sa)
	}
	must(t, objs, "ServiceAccount", ns, "session-operator-controller-manager")
	if err := dryRunPod(ctx(t), d); err != nil {
		t.Errorf("the manager's pod is refused under the restricted Pod Security Standard: %v", err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
