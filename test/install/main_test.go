package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/sessionops/session-operator/internal/testenv"
)

// Tool versions; hack/chart.mk installs the same ones.
const (
	helmModule        = "helm.sh/helm/v3"
	helmVersion       = "v3.22.0"
	crdRefDocsModule  = "github.com/elastic/crd-ref-docs"
	crdRefDocsVersion = "v0.3.0"
)

var (
	root   = testenv.RepoRoot()
	chart  = filepath.Join(root, "charts", "session-operator")
	cfg    *rest.Config
	dyn    dynamic.Interface
	mapper meta.RESTMapper
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, c, err := testenv.Start(filepath.Join(root, "test", "install", "testdata", "crds"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	cfg = c
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// ---------------------------------------------------------------- tools -----------

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// tool returns bin/tools/NAME, installing PKG@VERSION there with `go install` unless the
// binary there was already built from MODULE at VERSION.
func tool(t *testing.T, name, module, pkg, version string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[name]; ok {
		return p
	}
	dir := filepath.Join(root, "bin", "tools")
	path := filepath.Join(dir, name)
	if !builtFrom(path, module, version) {
		t.Logf("installing %s@%s into %s", pkg, version, dir)
		cmd := exec.Command("go", "install", pkg+"@"+version)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go install %s@%s: %v\n%s", pkg, version, err, out)
		}
		if !builtFrom(path, module, version) {
			t.Fatalf("%s is not built from %s %s after go install", path, module, version)
		}
	}
	toolPaths[name] = path
	return path
}

// builtFrom reports whether the Go binary at path was built from module at version.
func builtFrom(path, module, version string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	out, err := exec.Command("go", "version", "-m", path).Output()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == module && f[2] == version {
			return true
		}
	}
	return false
}

func helmBin(t *testing.T) string {
	return tool(t, "helm", helmModule, helmModule+"/cmd/helm", helmVersion)
}

// helm runs the helm binary with its configuration and cache kept out of $HOME.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = root
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// helmTemplate runs `helm template` for the chart into namespace with extra arguments.
func helmTemplate(t *testing.T, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, errOut, err := helm(t, append([]string{"template", release, chart, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	objs, err := decode([]byte(out))
	if err != nil {
		t.Fatalf("decoding helm template output: %v\n%s", err, out)
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return objs
}

// decode splits a multi-document YAML stream into objects, dropping empty documents.
func decode(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document without apiVersion, kind or name: %v", m)
		}
		out = append(out, u)
	}
}

// ---------------------------------------------------------------- apiserver -------

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// ensureNamespace creates a namespace for real (a dry run cannot hold objects applied into
// a namespace that does not exist), with the restricted Pod Security Standard enforced.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": map[string]any{
			"pod-security.kubernetes.io/enforce": "restricted",
		}},
	}}
	if err := apply(ctx(t), ns, false); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// apply server-side applies obj with strict field validation: unknown or duplicate
// fields are errors, as are values the apiserver's validation, CEL rules or admission
// refuse. dryRun keeps the object from being stored.
func apply(c context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	var ri dynamic.ResourceInterface
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			return fmt.Errorf("namespaced %s has no namespace", gvk.Kind)
		}
		ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	} else {
		if obj.GetNamespace() != "" {
			return fmt.Errorf("cluster-scoped %s has namespace %q", gvk.Kind, obj.GetNamespace())
		}
		ri = dyn.Resource(m.Resource)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: "install-test", Force: ptr.To(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(c, obj.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// dryRunAll applies every object with a server-side dry run and reports each refusal.
func dryRunAll(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	c := ctx(t)
	for _, o := range objs {
		if err := apply(c, o, true); err != nil {
			t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// dryRunPod creates, as a dry run, a Pod with the Deployment's pod template in its
// namespace, so that Pod Security admission judges it as it would the Deployment's pods.
func dryRunPod(c context.Context, deploy *unstructured.Unstructured) error {
	spec, ok, _ := unstructured.NestedMap(deploy.Object, "spec", "template", "spec")
	if !ok {
		return fmt.Errorf("deployment %s has no pod template", deploy.GetName())
	}
	labels, _, _ := unstructured.NestedStringMap(deploy.Object, "spec", "template", "metadata", "labels")
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": deploy.GetName() + "-pss", "namespace": deploy.GetNamespace()},
		"spec":     spec,
	}}
	pod.SetLabels(labels)
	data, err := json.Marshal(pod.Object)
	if err != nil {
		return err
	}
	_, err = dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(deploy.GetNamespace()).
		Patch(c, pod.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			FieldManager: "install-test", Force: ptr.To(true), FieldValidation: "Strict", DryRun: []string{metav1.DryRunAll},
		})
	return err
}

// ---------------------------------------------------------------- object lookup ---

func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func must(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, namespace, name)
	if o == nil {
		var have []string
		for _, o := range objs {
			have = append(have, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
		}
		t.Fatalf("no %s %s/%s among:\n  %s", kind, namespace, name, strings.Join(have, "\n  "))
	}
	return o
}

// managerContainer returns the Deployment's container named manager.
func managerContainer(t *testing.T, deploy *unstructured.Unstructured) map[string]any {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		if m, ok := c.(map[string]any); ok && m["name"] == "manager" {
			return m
		}
	}
	t.Fatalf("deployment %s has no container named manager", deploy.GetName())
	return nil
}

func containerArgs(t *testing.T, deploy *unstructured.Unstructured) []string {
	t.Helper()
	args, _, _ := unstructured.NestedStringSlice(managerContainer(t, deploy), "args")
	return args
}
