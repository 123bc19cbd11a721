package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sessionops/session-operator/internal/render"
)

var deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

// TestUninstallHookWithChartRBAC runs the chart's pre-delete hook, with its own arguments and
// as the manager's ServiceAccount, beside a manager under the chart's RBAC: a SessionCluster
// wiring a user's Deployment is deleted, the manager unwires the Deployment and drops its
// finalizer, and the hook exits 0 with no SessionCluster left.
func TestUninstallHookWithChartRBAC(t *testing.T) {
	bin := managerBinary(t)
	const release, namespace, web = "hook", "hook-system", "hook-web"
	for _, ns := range []string{namespace, web} {
		ensureNamespace(t, ns)
	}
	objs := helmTemplate(t, release, namespace, "--set", "crds.enabled=false", "--set", "rbac.aggregateToDefaultRoles=false")
	if job := find(objs, "Job", namespace, release+"-session-operator-uninstall"); job != nil {
		t.Errorf("crds.enabled=false renders the uninstall hook; the SessionClusters outlive such a release")
	}
	user := applyRBAC(t, objs)
	waitAllowed(t, user, authorizationv1.ResourceAttributes{Verb: "delete", Group: "session.sessionops.dev", Resource: "sessionclusters"})
	m := startManager(t, bin, containerArgs(t, must(t, objs, "Deployment", namespace, release+"-session-operator")), user)

	// The user's Deployment, and a SessionCluster wiring it.
	userDeploy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "my-shop", "namespace": web},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "my-shop"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "my-shop"}},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "example/shop:1"}}},
			},
		},
	}}
	if _, err := dyn.Resource(deployments).Namespace(web).Create(ctx(t), userDeploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(t, web, "byo", map[string]any{
		"mode":  "Store",
		"apps":  []any{map[string]any{"name": "web", "workloadRef": map[string]any{"name": "my-shop"}}},
		"store": map[string]any{},
	})
	create(t, web, "chat", map[string]any{
		"mode":       "Clustered",
		"apps":       []any{map[string]any{"name": "web", "image": "example/chat:1"}},
		"clustering": map[string]any{"discovery": "KubernetesAPI"},
	})
	wired := func() bool {
		d, err := dyn.Resource(deployments).Namespace(web).Get(ctx(t), "my-shop", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, ok := d.GetLabels()[render.LabelWiredTo]
		return ok
	}
	m.waitFor(t, time.Minute, "the user's Deployment wired", wired)

	// The hook, as the chart renders it when the CRD goes with the release.
	hookObjs := helmTemplate(t, release, namespace, "--show-only", "templates/uninstall-hook.yaml")
	job := must(t, hookObjs, "Job", namespace, release+"-session-operator-uninstall")
	if err := dryRunPod(ctx(t), job); err != nil {
		t.Errorf("the hook's pod is refused under the restricted Pod Security Standard: %v", err)
	}
	containers, _, _ := unstructured.NestedSlice(job.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, user); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the hook %v: %v\n%s\nmanager:\n%s", args, err, out, m.logs.String())
	}
	if strings.Contains(string(out), "did not unwire in time") {
		t.Errorf("the hook had to remove a finalizer itself although the manager ran:\n%s", out)
	}
	t.Logf("the hook returned in %.1f s", time.Since(start).Seconds())
	for _, name := range []string{"byo", "chat"} {
		if _, err := dyn.Resource(sessionClusters).Namespace(web).Get(ctx(t), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("SessionCluster %s/%s after the hook: %v", web, name, err)
		}
	}
	if wired() {
		t.Error("the user's Deployment is still wired after the hook")
	}
}
