package install

import (
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
)

var (
	sessionClusters = schema.GroupVersionResource{Group: "session.sessionops.dev", Version: "v1alpha1", Resource: "sessionclusters"}
	statefulSets    = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	roles           = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
)

// TestManagerRunsWithChartRBAC installs the chart's ServiceAccount and RBAC for real, runs
// the manager as that ServiceAccount (impersonated) with the chart's arguments, and has it
// reconcile a Store and a Clustered (Kubernetes API discovery, so it must grant a Role
// itself) SessionCluster. The apiserver enforces RBAC, so a rule missing from the
// generated role shows as a refused write: Degraded with ApplyFailed, a missing child, or
// "forbidden" in the manager's log. With a namespace list, a SessionCluster elsewhere must
// be left alone.
func TestManagerRunsWithChartRBAC(t *testing.T) {
	bin := managerBinary(t)
	for _, tc := range []struct {
		name, release, namespace string
		watch                    []string
		ignored                  string // a namespace the manager must not touch
	}{
		{name: "all namespaces", release: "rbac-all", namespace: "rbac-all-system"},
		{name: "namespace list", release: "rbac-list", namespace: "rbac-list-system",
			watch: []string{"rbac-web-a", "rbac-web-b"}, ignored: "rbac-web-other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ensureNamespace(t, tc.namespace)
			for _, ns := range append(append([]string(nil), tc.watch...), tc.ignored) {
				if ns != "" {
					ensureNamespace(t, ns)
				}
			}
			args := []string{"--set", "crds.enabled=false", "--set", "rbac.aggregateToDefaultRoles=false"}
			if len(tc.watch) > 0 {
				args = append(args, "--set", "watchNamespaces={"+strings.Join(tc.watch, ",")+"}")
			}
			objs := helmTemplate(t, tc.release, tc.namespace, args...)
			user := applyRBAC(t, objs)
			// The apiserver's authorizer learns new bindings from a watch; wait until it
			// grants what the manager asks first, so that a refusal later is the rules'
			// fault. The lease check is the leader-election Role's, which the manager
			// cannot use here (leader election needs an in-cluster namespace).
			scope := ""
			if len(tc.watch) > 0 {
				scope = tc.watch[0]
			}
			waitAllowed(t, user, authorizationv1.ResourceAttributes{Namespace: scope, Verb: "watch", Group: "session.sessionops.dev", Resource: "sessionclusters"})
			waitAllowed(t, user, authorizationv1.ResourceAttributes{Namespace: tc.namespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"})
			d := must(t, objs, "Deployment", tc.namespace, tc.release+"-session-operator")
			m := startManager(t, bin, containerArgs(t, d), user)
			m.waitFor(t, 2*time.Minute, `"Starting workers" (the caches synced)`, func() bool {
				return strings.Contains(m.logs.String(), "Starting workers")
			})

			targets := tc.watch
			if len(targets) == 0 {
				targets = []string{"rbac-web-all"}
				ensureNamespace(t, targets[0])
			}
			for _, ns := range targets {
				create(t, ns, "shop", map[string]any{
					"mode":  "Store",
					"apps":  []any{map[string]any{"name": "web", "image": "example/shop:1"}},
					"store": map[string]any{"replicas": int64(3)},
				})
				create(t, ns, "chat", map[string]any{
					"mode":       "Clustered",
					"apps":       []any{map[string]any{"name": "web", "image": "example/chat:1"}},
					"clustering": map[string]any{"discovery": "KubernetesAPI"},
				})
			}
			if tc.ignored != "" {
				create(t, tc.ignored, "shop", map[string]any{
					"mode":  "Store",
					"apps":  []any{map[string]any{"name": "web", "image": "example/shop:1"}},
					"store": map[string]any{},
				})
			}
			for _, ns := range targets {
				for _, name := range []string{"shop", "chat"} {
					// A missing rule fails every pass; a transient (an ordering race, a
					// conflict) clears on the next one. Wait for Degraded to settle False.
					var degraded map[string]any
					deadline := time.Now().Add(time.Minute)
					for {
						degraded = condition(t, ns, name, "Degraded")
						if degraded != nil && degraded["status"] == "False" {
							break
						}
						if time.Now().After(deadline) {
							if degraded == nil {
								t.Fatalf("%s/%s has no status after a minute\n%s", ns, name, m.logs.String())
							}
							t.Fatalf("%s/%s stays Degraded (%v): %v", ns, name, degraded["reason"], degraded["message"])
						}
						time.Sleep(250 * time.Millisecond)
					}
				}
				if _, err := dyn.Resource(statefulSets).Namespace(ns).Get(ctx(t), "shop-store", metav1.GetOptions{}); err != nil {
					t.Errorf("the store StatefulSet %s/shop-store was not created: %v", ns, err)
				}
				if _, err := dyn.Resource(roles).Namespace(ns).Get(ctx(t), "chat-web-peers", metav1.GetOptions{}); err != nil {
					t.Errorf("the peer Role %s/chat-web-peers was not created: %v", ns, err)
				}
			}
			if tc.ignored != "" {
				// The watched namespaces were reconciled above; a manager that watched
				// this one would have written its status by now, or within a moment.
				time.Sleep(2 * time.Second)
				if c := condition(t, tc.ignored, "shop", "Degraded"); c != nil {
					t.Errorf("the manager reconciled %s/shop outside its namespaces %v", tc.ignored, tc.watch)
				}
			}
			var refused []string
			for _, line := range strings.Split(m.logs.String(), "\n") {
				if strings.Contains(line, "forbidden") {
					refused = append(refused, line)
				}
			}
			if len(refused) > 0 {
				t.Errorf("the manager was refused something with the chart's RBAC:\n%s", strings.Join(refused, "\n"))
			}
		})
	}
}

// applyRBAC applies the rendered ServiceAccount and RBAC for real and returns the
// ServiceAccount's user name, to impersonate.
func applyRBAC(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	var user string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			user = fmt.Sprintf("system:serviceaccount:%s:%s", o.GetNamespace(), o.GetName())
			fallthrough
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := apply(ctx(t), o, false); err != nil {
				t.Fatalf("applying %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
	}
	if user == "" {
		t.Fatal("the chart renders no ServiceAccount")
	}
	return user
}

// waitAllowed polls a SubjectAccessReview until user may do what attrs say.
func waitAllowed(t *testing.T, user string, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx(t), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &attrs,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s may not %s %s.%s in %q: %s", user, attrs.Verb, attrs.Resource, attrs.Group, attrs.Namespace, sar.Status.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func create(t *testing.T, namespace, name string, spec map[string]any) {
	t.Helper()
	sc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "session.sessionops.dev/v1alpha1", "kind": "SessionCluster",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     spec,
	}}
	if _, err := dyn.Resource(sessionClusters).Namespace(namespace).Create(ctx(t), sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SessionCluster %s/%s: %v", namespace, name, err)
	}
}

// condition returns the SessionCluster's condition of type typ, or nil.
func condition(t *testing.T, namespace, name, typ string) map[string]any {
	t.Helper()
	sc, err := dyn.Resource(sessionClusters).Namespace(namespace).Get(ctx(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading SessionCluster %s/%s: %v", namespace, name, err)
	}
	conds, _, _ := unstructured.NestedSlice(sc.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}
