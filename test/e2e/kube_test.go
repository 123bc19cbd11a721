//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// step runs one named part of the suite as a subtest, times it, and on failure records it
// and dumps the cluster's state (once per run).
func step(t *testing.T, name string, f func(t *testing.T)) bool {
	t.Helper()
	start := time.Now()
	ok := t.Run(name, func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				e.res.fail(name, "")
				e.dump(name)
			}
		})
		logf("step %s", name)
		f(t)
	})
	e.res.StepSeconds[name] = secs(time.Since(start))
	return ok
}

// loadSample reads a sample from config/samples and points it at the images of this run:
// the store at the local Redis image, every app at the locally built reference app, both
// with imagePullPolicy IfNotPresent. The sample files themselves stay as they are.
func loadSample(t *testing.T, file, namespace string) *sessionv1.SessionCluster {
	t.Helper()
	return loadManifest(t, filepath.Join("config/samples", file), namespace)
}

// loadManifest is loadSample for a SessionCluster manifest anywhere in the repository.
func loadManifest(t *testing.T, file, namespace string) *sessionv1.SessionCluster {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, file))
	if err != nil {
		t.Fatal(err)
	}
	sc := &sessionv1.SessionCluster{}
	if err := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(sc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	sc.Namespace = namespace
	for i := range sc.Spec.Apps {
		if sc.Spec.Apps[i].WorkloadRef != nil {
			continue // the user's workload runs its own image
		}
		sc.Spec.Apps[i].Image = appImage
		sc.Spec.Apps[i].ImagePullPolicy = corev1.PullIfNotPresent
	}
	if sc.Spec.Store != nil {
		sc.Spec.Store.Image = storeImage
		sc.Spec.Store.ImagePullPolicy = corev1.PullIfNotPresent
	}
	return sc
}

func (e *env) getSC(ctx context.Context, ns, name string) (*sessionv1.SessionCluster, error) {
	sc := &sessionv1.SessionCluster{}
	return sc, e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sc)
}

func isReady(sc *sessionv1.SessionCluster) bool {
	c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && sc.Status.ObservedGeneration == sc.Generation
}

func readyMessage(sc *sessionv1.SessionCluster) string {
	if c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionReady); c != nil {
		return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	return "no Ready condition yet"
}

// waitSC polls the SessionCluster every 200 ms until cond holds.
func (e *env) waitSC(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*sessionv1.SessionCluster) bool) *sessionv1.SessionCluster {
	t.Helper()
	ctx := context.Background()
	var last *sessionv1.SessionCluster
	err := poll(timeout, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, ns, name)
		if err != nil {
			return false, err
		}
		last = sc
		return cond(sc), nil
	})
	if err != nil {
		msg := ""
		if last != nil {
			msg = readyMessage(last)
		}
		t.Fatalf("%s/%s: waiting for %s: %v (%s)", ns, name, what, err, msg)
	}
	return last
}

// createNamespace makes a fresh namespace that enforces the restricted standard.
func (e *env) createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := e.ensureNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// podsOf lists the pods carrying the SessionCluster's instance label.
func (e *env) podsOf(ctx context.Context, ns, instance string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := e.c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{render.LabelInstance: instance})
	return pods.Items, err
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// restrictedProblems lists what in the pod breaks the restricted Pod Security Standard
// (the rules of pod-security.kubernetes.io "restricted", latest).
func restrictedProblems(p *corev1.Pod) []string {
	var probs []string
	ps := p.Spec.SecurityContext
	if ps == nil {
		ps = &corev1.PodSecurityContext{}
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		probs = append(probs, "host namespaces")
	}
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil {
			probs = append(probs, "hostPath volume "+v.Name)
		}
	}
	if ps.RunAsUser != nil && *ps.RunAsUser == 0 {
		probs = append(probs, "pod runAsUser 0")
	}
	all := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := ps.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			probs = append(probs, c.Name+": runAsNonRoot not true")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			probs = append(probs, c.Name+": runAsUser 0")
		}
		seccomp := ps.SeccompProfile
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
			probs = append(probs, c.Name+": seccompProfile not RuntimeDefault/Localhost")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			probs = append(probs, c.Name+": allowPrivilegeEscalation not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			probs = append(probs, c.Name+": privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			probs = append(probs, c.Name+": capabilities do not drop ALL")
		}
		if sc.Capabilities != nil {
			for _, a := range sc.Capabilities.Add {
				if a != "NET_BIND_SERVICE" {
					probs = append(probs, c.Name+": adds capability "+string(a))
				}
			}
		}
	}
	return probs
}

// provePSSEnforced asks the apiserver (server-side dry run) to admit a privileged pod into
// ns and expects the PodSecurity admission to refuse it.
func (e *env) provePSSEnforced(t *testing.T, ns string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pss-probe", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "x", Image: clientImage,
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
	err := e.c.Create(context.Background(), pod, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("namespace %s admitted a privileged pod (dry run): %v; the restricted standard is not enforced", ns, err)
	}
}

// startClient runs the client pod (sessionload) in ns and waits until it runs.
func (e *env) startClient(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: clientPod, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": clientPod}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "client", Image: clientImage, ImagePullPolicy: corev1.PullIfNotPresent,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
			}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	if err := e.c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, err
		}
		return podReady(p), nil
	})
	if err != nil {
		t.Fatalf("client pod in %s: %v", ns, err)
	}
}

// sessionload runs the load client in ns's client pod and returns its stdout.
func (e *env) sessionload(ctx context.Context, ns string, args ...string) (string, error) {
	return e.kcCtx(ctx, append([]string{"-n", ns, "exec", clientPod, "--", "/sessionload"}, args...)...)
}

// ---------------------------------------------------------------- children ------

// child is one object the operator (or a controller under it) made.
type child struct {
	Kind, Name string
	UID        types.UID
	Generation int64
	Owner      string // kind/name of the controller owner, "" when none
}

// childLists are the kinds a SessionCluster's children (and their pods, ReplicaSets and
// claims) come in.
func childLists() map[string]client.ObjectList {
	return map[string]client.ObjectList{
		"StatefulSet":           &appsv1.StatefulSetList{},
		"Deployment":            &appsv1.DeploymentList{},
		"ReplicaSet":            &appsv1.ReplicaSetList{},
		"Pod":                   &corev1.PodList{},
		"Service":               &corev1.ServiceList{},
		"ConfigMap":             &corev1.ConfigMapList{},
		"Secret":                &corev1.SecretList{},
		"ServiceAccount":        &corev1.ServiceAccountList{},
		"PersistentVolumeClaim": &corev1.PersistentVolumeClaimList{},
		"PodDisruptionBudget":   &policyv1.PodDisruptionBudgetList{},
		"NetworkPolicy":         &networkingv1.NetworkPolicyList{},
		"Ingress":               &networkingv1.IngressList{},
		"Role":                  &rbacv1.RoleList{},
		"RoleBinding":           &rbacv1.RoleBindingList{},
	}
}

// children lists every object in ns labelled with the SessionCluster's instance name.
func (e *env) children(ctx context.Context, ns, instance string) (map[string]child, error) {
	out := map[string]child{}
	for kind, list := range childLists() {
		if err := e.c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{render.LabelInstance: instance}); err != nil {
			return nil, fmt.Errorf("listing %s: %w", kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			o := it.(client.Object)
			c := child{Kind: kind, Name: o.GetName(), UID: o.GetUID(), Generation: o.GetGeneration()}
			if ref := metav1.GetControllerOf(o); ref != nil {
				c.Owner = ref.Kind + "/" + ref.Name
			}
			out[kind+"/"+o.GetName()] = c
		}
	}
	return out, nil
}

// ownershipProblems: every child the operator made is controlled by the SessionCluster;
// pods, ReplicaSets and claims by their workload (claims, kept on purpose, by nobody).
func ownershipProblems(kids map[string]child, scName string) []string {
	var probs []string
	for key, c := range kids {
		switch c.Kind {
		case "Pod":
			if c.Owner == "" {
				probs = append(probs, key+" has no controller")
			}
		case "ReplicaSet":
			if !strings.HasPrefix(c.Owner, "Deployment/") {
				probs = append(probs, key+" not controlled by a Deployment")
			}
		case "PersistentVolumeClaim":
		default:
			if c.Owner != "SessionCluster/"+scName {
				probs = append(probs, fmt.Sprintf("%s controlled by %q, not SessionCluster/%s", key, c.Owner, scName))
			}
		}
	}
	slices.Sort(probs)
	return probs
}

// ---------------------------------------------------------------- operator ------

func (e *env) operatorPods(ctx context.Context) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := e.c.List(ctx, &pods, client.InNamespace(operatorNS), client.MatchingLabels{"app.kubernetes.io/name": "session-operator"})
	return pods.Items, err
}

func (e *env) leaseHolder(ctx context.Context) string {
	l := &coordinationv1.Lease{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: leaseName}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// reconcileSuccesses reads controller_runtime_reconcile_total{controller="sessioncluster"}
// for every result but error (a pass that asks to be requeued after a while finished too)
// from the operator pod's metrics, through the apiserver's pod proxy.
func (e *env) reconcileSuccesses(ctx context.Context, pod string) (float64, error) {
	out, err := e.kcCtx(ctx, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:8080/proxy/metrics", operatorNS, pod))
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "controller_runtime_reconcile_total{") &&
			strings.Contains(line, `controller="sessioncluster"`) && !strings.Contains(line, `result="error"`) {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v); err == nil {
				total += v
			}
		}
	}
	return total, nil
}
