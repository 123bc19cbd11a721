package install

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sessionops/session-operator/internal/render"
)

const crdName = "sessionclusters.session.sessionops.dev"

// chartCase is one set of values the chart is rendered with.
type chartCase struct {
	name      string
	namespace string   // the release namespace
	args      []string // helm template arguments
	watch     []string // the namespaces the values ask to watch
	check     func(t *testing.T, objs []*unstructured.Unstructured)
}

func chartCases() []chartCase {
	return []chartCase{
		{name: "default", namespace: "chart-default", check: func(t *testing.T, objs []*unstructured.Unstructured) {
			crd := must(t, objs, "CustomResourceDefinition", "", crdName)
			if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
				t.Error("the CRD has helm.sh/resource-policy without crds.keep")
			}
			if len(ofKind(objs, "ServiceMonitor")) != 0 {
				t.Error("a ServiceMonitor is rendered by default; it must be off so the chart installs without the Prometheus CRDs")
			}
			must(t, objs, "Service", "chart-default", "session-operator-metrics")
			must(t, objs, "ServiceAccount", "chart-default", "session-operator")
			// The manager learns its memory limit, to keep its heap under it (GOMEMLIMIT).
			env, _, _ := unstructured.NestedSlice(managerContainer(t, must(t, objs, "Deployment", "chart-default", "session-operator")), "env")
			if !slices.ContainsFunc(env, func(e any) bool {
				m, _ := e.(map[string]any)
				res, _, _ := unstructured.NestedString(m, "valueFrom", "resourceFieldRef", "resource")
				return m["name"] == "MEMORY_LIMIT" && res == "limits.memory"
			}) {
				t.Errorf("the manager's env %v does not give it MEMORY_LIMIT from limits.memory", env)
			}
			hook := must(t, objs, "Job", "chart-default", "session-operator-uninstall")
			if hook.GetAnnotations()["helm.sh/hook"] != "pre-delete" {
				t.Errorf("the uninstall Job is not a pre-delete hook: %v", hook.GetAnnotations())
			}
			if err := dryRunPod(ctx(t), hook); err != nil {
				t.Errorf("the uninstall hook's pod is refused in a namespace enforcing the restricted Pod Security Standard: %v", err)
			}
		}},
		{name: "one namespace", namespace: "chart-one", watch: []string{"web-one"},
			args: []string{"--set", "watchNamespaces={web-one}"}},
		{name: "namespace list", namespace: "chart-list", watch: []string{"web-a", "web-b"},
			args: []string{"--values", filepath.Join(root, "test", "install", "testdata", "values", "list.yaml")}},
		{name: "crds.keep", namespace: "chart-keep", args: []string{"--set", "crds.keep=true"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				crd := must(t, objs, "CustomResourceDefinition", "", crdName)
				if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
					t.Errorf("crds.keep: the CRD's helm.sh/resource-policy is %q, want keep", got)
				}
				if len(ofKind(objs, "Job")) != 0 {
					t.Error("crds.keep renders the uninstall hook, which would delete the SessionClusters the CRD keeps")
				}
			}},
		{name: "serviceMonitor", namespace: "chart-smon", args: []string{"--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				sm := must(t, objs, "ServiceMonitor", "chart-smon", "session-operator")
				svc := must(t, objs, "Service", "chart-smon", "session-operator-metrics")
				sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
				for k, v := range sel {
					if svc.GetLabels()[k] != v {
						t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service does not carry", k, v)
					}
				}
				eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
				ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
				if len(eps) != 1 || len(ports) != 1 || eps[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] {
					t.Errorf("the ServiceMonitor's endpoint %v does not name the metrics Service's port %v", eps, ports)
				}
				if sm.GetLabels()["release"] != "prom" {
					t.Error("serviceMonitor.labels are not on the ServiceMonitor")
				}
			}},
		{name: "crds disabled", namespace: "chart-nocrd", args: []string{"--set", "crds.enabled=false"},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				if len(ofKind(objs, "CustomResourceDefinition")) != 0 {
					t.Error("crds.enabled=false still renders a CRD")
				}
			}},
		{name: "customized", namespace: "chart-custom", watch: []string{"web-c"},
			args: []string{"--values", filepath.Join(root, "test", "install", "testdata", "values", "custom.yaml")},
			check: func(t *testing.T, objs []*unstructured.Unstructured) {
				d := must(t, objs, "Deployment", "chart-custom", "ops")
				if got, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(got) != "2" {
					t.Errorf("replicas %v, want 2", got)
				}
				for _, path := range [][]string{
					{"spec", "template", "spec", "nodeSelector"},
					{"spec", "template", "spec", "tolerations"},
					{"spec", "template", "spec", "affinity"},
					{"spec", "template", "spec", "topologySpreadConstraints"},
					{"spec", "template", "spec", "imagePullSecrets"},
					{"spec", "template", "spec", "priorityClassName"},
				} {
					if _, ok, _ := unstructured.NestedFieldNoCopy(d.Object, path...); !ok {
						t.Errorf("%s is not rendered", strings.Join(path, "."))
					}
				}
				c := managerContainer(t, d)
				if c["image"] != "registry.example.com/ops/session-operator:1.2.3" || c["imagePullPolicy"] != "Always" {
					t.Errorf("image %v pull policy %v", c["image"], c["imagePullPolicy"])
				}
				if args := containerArgs(t, d); !slices.Contains(args, "--zap-devel=false") {
					t.Errorf("extraArgs missing from %v", args)
				}
				if d.GetNamespace() != "chart-custom" || find(objs, "ServiceAccount", "chart-custom", "ops-sa") == nil {
					t.Error("serviceAccount.name is not used")
				}
				if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != "ops-sa" {
					t.Errorf("serviceAccountName %q, want ops-sa", sa)
				}
			}},
	}
}

// TestChartAppliesOnAPIServer renders the chart for each case and applies every object
// with a strict server-side dry run; it also checks the scope of the manager's RBAC, the
// manager's arguments, and that its pod passes the restricted Pod Security Standard and
// carries the labels the stores' NetworkPolicies admit.
func TestChartAppliesOnAPIServer(t *testing.T) {
	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			ensureNamespace(t, tc.namespace)
			for _, ns := range tc.watch {
				ensureNamespace(t, ns)
			}
			release := "session-operator"
			if tc.name == "customized" {
				release = "ops"
			}
			objs := helmTemplate(t, release, tc.namespace, tc.args...)
			dryRunAll(t, objs)
			checkRBACScope(t, objs, release, tc.namespace, tc.watch)
			checkDeployment(t, objs, release, tc.namespace, tc.watch)
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

func checkRBACScope(t *testing.T, objs []*unstructured.Unstructured, fullname, namespace string, watch []string) {
	t.Helper()
	name := fullname + "-manager"
	if len(watch) == 0 {
		must(t, objs, "ClusterRole", "", name)
		crb := must(t, objs, "ClusterRoleBinding", "", name)
		checkSubject(t, crb, namespace)
		for _, r := range ofKind(objs, "Role") {
			if r.GetName() == name {
				t.Errorf("watching every namespace, yet a manager Role is rendered in %s", r.GetNamespace())
			}
		}
	} else {
		if find(objs, "ClusterRole", "", name) != nil || find(objs, "ClusterRoleBinding", "", name) != nil {
			t.Errorf("watching %v, yet the manager gets a ClusterRole", watch)
		}
		var got []string
		for _, r := range ofKind(objs, "Role") {
			if r.GetName() == name {
				got = append(got, r.GetNamespace())
			}
		}
		if !reflect.DeepEqual(got, watch) {
			t.Errorf("manager Roles in %v, want one in each of %v", got, watch)
		}
		for _, ns := range watch {
			checkSubject(t, must(t, objs, "RoleBinding", ns, name), namespace)
		}
	}
	le := fullname + "-leader-election"
	must(t, objs, "Role", namespace, le)
	checkSubject(t, must(t, objs, "RoleBinding", namespace, le), namespace)
}

// checkSubject checks a binding names the release's ServiceAccount in its namespace.
func checkSubject(t *testing.T, binding *unstructured.Unstructured, namespace string) {
	t.Helper()
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	if len(subjects) != 1 {
		t.Fatalf("%s %s has %d subjects", binding.GetKind(), binding.GetName(), len(subjects))
	}
	s := subjects[0].(map[string]any)
	if s["kind"] != "ServiceAccount" || s["namespace"] != namespace {
		t.Errorf("%s %s binds %v, want a ServiceAccount in %s", binding.GetKind(), binding.GetName(), s, namespace)
	}
}

func checkDeployment(t *testing.T, objs []*unstructured.Unstructured, fullname, namespace string, watch []string) {
	t.Helper()
	d := must(t, objs, "Deployment", namespace, fullname)
	args := containerArgs(t, d)
	if !slices.Contains(args, "--leader-elect") {
		t.Errorf("the manager runs without --leader-elect: %v", args)
	}
	var watchArg string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--watch-namespaces="); ok {
			watchArg = v
		}
	}
	if want := strings.Join(watch, ","); watchArg != want {
		t.Errorf("--watch-namespaces=%q, want %q", watchArg, want)
	}
	labels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
	for k, v := range render.DefaultOperatorPodLabels {
		if labels[k] != v {
			t.Errorf("the manager's pods lack %s=%s, by which the stores' NetworkPolicies admit the operator", k, v)
		}
	}
	c := managerContainer(t, d)
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if port, _, _ := unstructured.NestedFieldNoCopy(c, probe, "httpGet", "port"); port != "health" {
			t.Errorf("%s is not on the health port: %v", probe, port)
		}
	}
	if err := dryRunPod(ctx(t), d); err != nil {
		t.Errorf("the manager's pod is refused in a namespace enforcing the restricted Pod Security Standard: %v", err)
	}
}

// TestPodSecurityAdmissionIsActive is the control for the restricted checks above: a pod
// that breaks the standard must be refused, or their passing proves nothing.
func TestPodSecurityAdmissionIsActive(t *testing.T) {
	ensureNamespace(t, "pss-control")
	d := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "bad", "namespace": "pss-control"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "c", "image": "x", "securityContext": map[string]any{"privileged": true}}},
		}}},
	}}
	err := dryRunPod(ctx(t), d)
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a privileged pod in a restricted namespace got %v, want a PodSecurity refusal", err)
	}
}

// TestChartMatchesGenerated fails when the chart's generated templates are stale, and
// when the rendered CRD or RBAC rules differ from config/crd/bases and config/rbac.
func TestChartMatchesGenerated(t *testing.T) {
	t.Run("templates are fresh", func(t *testing.T) {
		out := t.TempDir()
		cmd := exec.Command("go", "run", "./hack/chartgen", "--out", out)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hack/chartgen: %v\n%s", err, b)
		}
		fresh := map[string]bool{}
		_ = filepath.WalkDir(out, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(out, p)
			fresh[rel] = true
			want, _ := os.ReadFile(p)
			got, err := os.ReadFile(filepath.Join(chart, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("charts/session-operator/%s is stale; run `make helm-generate` and commit it", rel)
			}
			return nil
		})
		crds, _ := filepath.Glob(filepath.Join(chart, "templates", "crds", "*"))
		for _, p := range crds {
			rel, _ := filepath.Rel(chart, p)
			if !fresh[rel] {
				t.Errorf("charts/session-operator/%s has no source in config/crd/bases; run `make helm-generate`", rel)
			}
		}
	})

	t.Run("CRD", func(t *testing.T) {
		objs := helmTemplate(t, "session-operator", "session-system")
		srcs, _ := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
		if len(srcs) == 0 {
			t.Fatal("no CRDs in config/crd/bases")
		}
		if got := len(ofKind(objs, "CustomResourceDefinition")); got != len(srcs) {
			t.Errorf("the chart renders %d CRDs, config/crd/bases has %d", got, len(srcs))
		}
		for _, src := range srcs {
			want := readObjects(t, src)[0]
			got := must(t, objs, "CustomResourceDefinition", "", want.GetName())
			if !reflect.DeepEqual(got.Object["spec"], want.Object["spec"]) {
				t.Errorf("the chart's CRD %s differs from %s; run `make helm-generate`", want.GetName(), rel(src))
			}
			for k, v := range want.GetAnnotations() {
				if got.GetAnnotations()[k] != v {
					t.Errorf("the chart's CRD lacks annotation %s=%s", k, v)
				}
			}
		}
	})

	rbac := filepath.Join(root, "config", "rbac")
	managerRules := rulesOf(t, filepath.Join(rbac, "role.yaml"), "manager-role")
	t.Run("RBAC, all namespaces", func(t *testing.T) {
		objs := helmTemplate(t, "session-operator", "session-system")
		sameRules(t, must(t, objs, "ClusterRole", "", "session-operator-manager"), managerRules, "role.yaml")
		sameRules(t, must(t, objs, "Role", "session-system", "session-operator-leader-election"),
			rulesOf(t, filepath.Join(rbac, "leader_election_role.yaml"), "leader-election-role"), "leader_election_role.yaml")
		sameRules(t, must(t, objs, "ClusterRole", "", "session-operator-sessioncluster-editor"),
			rulesOf(t, filepath.Join(rbac, "sessioncluster_editor_role.yaml"), "sessioncluster-editor-role"), "sessioncluster_editor_role.yaml")
		sameRules(t, must(t, objs, "ClusterRole", "", "session-operator-sessioncluster-viewer"),
			rulesOf(t, filepath.Join(rbac, "sessioncluster_viewer_role.yaml"), "sessioncluster-viewer-role"), "sessioncluster_viewer_role.yaml")
	})
	t.Run("RBAC, namespace list", func(t *testing.T) {
		objs := helmTemplate(t, "session-operator", "session-system", "--set", "watchNamespaces={web-a,web-b}")
		for _, ns := range []string{"web-a", "web-b"} {
			sameRules(t, must(t, objs, "Role", ns, "session-operator-manager"), managerRules, "role.yaml")
		}
	})
}

func rel(p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

func rulesOf(t *testing.T, path, name string) any {
	t.Helper()
	for _, o := range readObjects(t, path) {
		if o.GetName() == name {
			return o.Object["rules"]
		}
	}
	t.Fatalf("%s has no object named %s", rel(path), name)
	return nil
}

func sameRules(t *testing.T, obj *unstructured.Unstructured, want any, src string) {
	t.Helper()
	if !reflect.DeepEqual(obj.Object["rules"], want) {
		got, _ := yaml.Marshal(obj.Object["rules"])
		w, _ := yaml.Marshal(want)
		t.Errorf("%s %s/%s grants other rules than config/rbac/%s; run `make helm-generate`.\nchart:\n%s\nconfig:\n%s",
			obj.GetKind(), obj.GetNamespace(), obj.GetName(), src, got, w)
	}
}

// TestChartSchemaRefusesBadValues checks values.schema.json (and the chart's own checks)
// refuse bad values with a message that names the value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want []string
	}{
		{[]string{"replicaCount=x"}, []string{"/replicaCount", "want integer"}},
		{[]string{"replicaCount=0"}, []string{"/replicaCount", "minimum"}},
		{[]string{"image.pullPolicy=Sometimes"}, []string{"/image/pullPolicy", "IfNotPresent"}},
		{[]string{"watchNamespaces={Not_A_Namespace}"}, []string{"/watchNamespaces/0", "does not match pattern"}},
		{[]string{"watchNamespaces={web,web}"}, []string{"/watchNamespaces", "are equal"}},
		{[]string{"crds.enabled=maybe"}, []string{"/crds/enabled", "want boolean"}},
		{[]string{"replicas=3"}, []string{"additional properties 'replicas' not allowed"}},
		{[]string{"controller.storeObserveTimeout=soon"}, []string{"/controller/storeObserveTimeout", "does not match pattern"}},
		{[]string{"metrics.port=80"}, []string{"/metrics/port", "minimum"}},
		{[]string{"extraArgs={verbose}"}, []string{"/extraArgs/0"}},
		{[]string{"replicaCount=2", "leaderElection.enabled=false"}, []string{"replicaCount > 1 needs leaderElection.enabled"}},
		{[]string{"health.port=8080"}, []string{"metrics.port and health.port must differ"}},
		{[]string{"podLabels.app\\.kubernetes\\.io/name=other"}, []string{"podLabels must not set app.kubernetes.io/name"}},
		{[]string{"serviceMonitor.enabled=true", "metrics.service.enabled=false"}, []string{"serviceMonitor.enabled needs metrics.service.enabled"}},
	} {
		args := []string{"template", "x", chart}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		_, errOut, err := helm(t, args...)
		if err == nil {
			t.Errorf("--set %v was accepted", tc.set)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("--set %v: the message does not say %q:\n%s", tc.set, w, errOut)
			}
		}
	}
}

// TestHelmLint runs `helm lint --strict`, which must report no warning or error.
func TestHelmLint(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--set", "watchNamespaces={web-a,web-b}", "--set", "serviceMonitor.enabled=true", "--set", "crds.keep=true"},
		{"--values", filepath.Join(root, "test", "install", "testdata", "values", "custom.yaml")},
	} {
		out, errOut, err := helm(t, append([]string{"lint", "--strict", chart}, args...)...)
		if err != nil || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
			t.Errorf("helm lint --strict %v: %v\n%s%s", args, err, out, errOut)
		}
	}
}
