package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/testenv"
)

func clusteredCluster(ns string, discovery sessionv1.DiscoveryMethod) *sessionv1.SessionCluster {
	return &sessionv1.SessionCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: sessionv1.SessionClusterSpec{
			Mode:       sessionv1.ModeClustered,
			Apps:       []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4", Replicas: ptr.To[int32](3)}},
			Clustering: &sessionv1.ClusteringSpec{Port: 7946, Discovery: discovery},
		},
	}
}

func TestClusteredPeersEnvAndRBAC(t *testing.T) {
	ns := namespace(t)
	create(t, clusteredCluster(ns, sessionv1.DiscoveryKubernetesAPI))
	peers := &corev1.Service{}
	dep := &appsv1.Deployment{}
	role := &rbacv1.Role{}
	binding := &rbacv1.RoleBinding{}
	sa := &corev1.ServiceAccount{}
	pdb := &policyv1.PodDisruptionBudget{}
	eventually(t, 20*time.Second, func() error {
		for name, o := range map[string]client.Object{"shop-web-peers": peers, "shop-web": dep} {
			if err := get(t, ns, name, o); err != nil {
				return err
			}
		}
		if err := get(t, ns, "shop-web", sa); err != nil {
			return err
		}
		if err := get(t, ns, "shop-web", pdb); err != nil {
			return err
		}
		if err := get(t, ns, "shop-web-peers", role); err != nil {
			return err
		}
		return get(t, ns, "shop-web-peers", binding)
	})
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses || len(peers.Spec.Ports) != 2 ||
		peers.Spec.Ports[0].Port != 7946 || peers.Spec.Ports[1].Protocol != corev1.ProtocolUDP {
		t.Errorf("peer service %+v", peers.Spec)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	fqdn := "shop-web-peers." + ns + ".svc.cluster.local"
	for _, k := range []string{"SESSION_PEERS_DNS", "DNS_MEMBERSHIP_SERVICE_NAME", "JGROUPS_DNS_QUERY", "HZ_NETWORK_JOIN_KUBERNETES_SERVICEDNS"} {
		if env[k].Value != fqdn {
			t.Errorf("%s = %q", k, env[k].Value)
		}
	}
	if env["KUBERNETES_NAMESPACE"].ValueFrom == nil || env["KUBERNETES_NAMESPACE"].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("KUBERNETES_NAMESPACE %+v", env["KUBERNETES_NAMESPACE"])
	}
	if !strings.Contains(env["KUBERNETES_LABELS"].Value, "session.sessionops.dev/app=web") {
		t.Errorf("KUBERNETES_LABELS %q", env["KUBERNETES_LABELS"].Value)
	}
	if _, ok := env["SESSION_REDIS_ADDR"]; ok {
		t.Error("clustered app wired to a store")
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != "shop-web" || !ptr.Deref(pod.AutomountServiceAccountToken, false) {
		t.Errorf("service account %q automount %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
		t.Errorf("rolling update %+v: never more than one peer away", ru)
	}
	if *pod.TerminationGracePeriodSeconds < 30 {
		t.Errorf("termination grace %d", *pod.TerminationGracePeriodSeconds)
	}
	if pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("pdb %+v", pdb.Spec)
	}
	want := map[string][]string{"": {"pods"}, "discovery.k8s.io": {"endpointslices"}}
	for _, r := range role.Rules {
		if !slices.Equal(r.Resources, want[r.APIGroups[0]]) || !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("role rule %+v", r)
		}
	}
	if binding.RoleRef.Name != "shop-web-peers" || binding.Subjects[0].Name != "shop-web" {
		t.Errorf("binding %+v", binding)
	}
	waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionTrue, sessionv1.ReasonNotRequired)
}

func TestStickyOnlyLosesAsFewPinnedUsersAsPossible(t *testing.T) {
	ns := namespace(t)
	create(t, stickyCluster(ns, sessionv1.ControllerIngressNginx))
	dep := &appsv1.Deployment{}
	pdb := &policyv1.PodDisruptionBudget{}
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "shop-web", dep); err != nil {
			return err
		}
		return get(t, ns, "shop-web", pdb)
	})
	if ru := dep.Spec.Strategy.RollingUpdate; ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge.IntValue() != 1 {
		t.Errorf("rolling update %+v", ru)
	}
	pre := dep.Spec.Template.Spec.Containers[0].Lifecycle
	if pre == nil || pre.PreStop == nil || pre.PreStop.Sleep == nil || pre.PreStop.Sleep.Seconds < 5 {
		t.Errorf("no preStop delay for the load balancer to drop the pod: %+v", pre)
	}
}

// TestHybrid is Sticky with a store: affinity at the load balancer and the store wiring.
func TestHybrid(t *testing.T) {
	ns := namespace(t)
	sc := stickyCluster(ns, sessionv1.ControllerIngressNginx)
	sc.Spec.Store = &sessionv1.StoreSpec{}
	create(t, sc)
	children := waitChildren(t, ns, append(storeChildren(), &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}}))
	ing := children[len(children)-1].(*networkingv1.Ingress)
	if ing.Annotations["nginx.ingress.kubernetes.io/affinity"] != "cookie" {
		t.Errorf("hybrid ingress without affinity: %v", ing.Annotations)
	}
	dep := children[9].(*appsv1.Deployment)
	mode, sentinels := "", ""
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		switch e.Name {
		case "SESSION_MODE":
			mode = e.Value
		case "SESSION_REDIS_SENTINEL_ADDRS":
			sentinels = e.Value
		}
	}
	if mode != "Sticky" || sentinels == "" {
		t.Errorf("hybrid wiring: mode %q sentinels %q", mode, sentinels)
	}
	if err := get(t, ns, "shop-web", &policyv1.PodDisruptionBudget{}); err == nil {
		t.Error("with a store no session dies with a pod: the app needs no PDB of its own")
	}
}

// ownedChildren lists every object the operator owns for the SessionCluster, by kind/name,
// with its UID.
func ownedChildren(t *testing.T, sc *sessionv1.SessionCluster) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	r := &SessionClusterReconciler{Client: k8s, GatewayAPI: func() bool { return false }}
	for _, k := range r.kinds() {
		list := k.list.DeepCopyObject().(client.ObjectList)
		if err := k8s.List(context.Background(), list, client.InNamespace(sc.Namespace)); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(list)
		for _, it := range items {
			o := it.(client.Object)
			if metav1.IsControlledBy(o, sc) {
				out[describe(k8s, o)] = o.GetUID()
			}
		}
	}
	return out
}

func expectedChildren(t *testing.T, sc *sessionv1.SessionCluster) []string {
	t.Helper()
	in := render.Inputs{AppPasswords: map[string]string{}, Internal: render.InternalPasswords{Operator: "o", Replication: "r", Sentinel: "s"}}
	for _, a := range sc.Spec.Apps {
		in.AppPasswords[a.Name] = "any-password-1"
	}
	d, err := render.Render(sc, render.Options{}, in)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range d.Objects {
		out = append(out, describe(k8s, o))
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]types.UID) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestModeChangesLeaveNoOrphans moves one SessionCluster through every mode and back and
// checks after each step that exactly the new spec's children exist and that those the
// old spec also had were kept, not recreated.
func TestModeChangesLeaveNoOrphans(t *testing.T) {
	ns := namespace(t)
	ingress := &sessionv1.IngressSpec{Host: "shop.example.com"}
	sticky := &sessionv1.StickySpec{}
	store := func() *sessionv1.StoreSpec {
		return &sessionv1.StoreSpec{Persistence: &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}}
	}
	steps := []struct {
		name string
		set  func(*sessionv1.SessionClusterSpec)
	}{
		{"Store", func(s *sessionv1.SessionClusterSpec) {
			*s = sessionv1.SessionClusterSpec{Mode: sessionv1.ModeStore, Store: store(), Ingress: ingress}
		}},
		{"Hybrid", func(s *sessionv1.SessionClusterSpec) { s.Mode, s.Sticky = sessionv1.ModeSticky, sticky }},
		{"StickyOnly", func(s *sessionv1.SessionClusterSpec) { s.Store = nil }},
		{"ClusteredAPI", func(s *sessionv1.SessionClusterSpec) {
			s.Mode, s.Sticky, s.Clustering = sessionv1.ModeClustered, nil, &sessionv1.ClusteringSpec{Discovery: sessionv1.DiscoveryKubernetesAPI}
		}},
		{"ClusteredDNS", func(s *sessionv1.SessionClusterSpec) { s.Clustering.Discovery = sessionv1.DiscoveryDNS }},
		{"StickyAgain", func(s *sessionv1.SessionClusterSpec) {
			s.Mode, s.Clustering, s.Sticky = sessionv1.ModeSticky, nil, sticky
		}},
		{"StoreAgainNoIngress", func(s *sessionv1.SessionClusterSpec) {
			s.Mode, s.Sticky, s.Store, s.Ingress = sessionv1.ModeStore, nil, store(), nil
		}},
		{"ClusteredFromStore", func(s *sessionv1.SessionClusterSpec) {
			s.Mode, s.Store, s.Clustering = sessionv1.ModeClustered, nil, &sessionv1.ClusteringSpec{}
		}},
		{"StoreFromClustered", func(s *sessionv1.SessionClusterSpec) {
			s.Mode, s.Clustering, s.Store = sessionv1.ModeStore, nil, store()
		}},
	}
	sc := &sessionv1.SessionCluster{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns}}
	var before map[string]types.UID
	for i, step := range steps {
		apps := []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4", Replicas: ptr.To[int32](2)}}
		if i == 0 {
			step.set(&sc.Spec)
			sc.Spec.Apps = apps
			create(t, sc)
		} else {
			updateSpec(t, ns, step.set)
			if err := get(t, ns, "shop", sc); err != nil {
				t.Fatal(err)
			}
		}
		want := expectedChildren(t, sc)
		var now map[string]types.UID
		eventually(t, 30*time.Second, func() error {
			now = ownedChildren(t, sc)
			if got := keys(now); !slices.Equal(got, want) {
				return fmt.Errorf("%s: children\n got %v\nwant %v", step.name, got, want)
			}
			c, cur := condition(t, ns, "shop", sessionv1.ConditionDegraded)
			if cur.Status.ObservedGeneration != cur.Generation || c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("%s: not converged: %+v", step.name, c)
			}
			return nil
		})
		for k, uid := range before {
			if nowUID, ok := now[k]; ok && nowUID != uid {
				t.Errorf("%s: %s was recreated instead of kept", step.name, k)
			}
		}
		before = now
	}
	// Removing a persistent store tells the user where the sessions on disk went.
	ev, err := eventWith(t, ns, sessionv1.EventStoreRemoved)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ev.Note, "data-shop-store-0") || !strings.Contains(ev.Note, "kept") {
		t.Errorf("store removal event: %q", ev.Note)
	}
}

// TestSamplesApply applies every sample in config/samples and waits until the operator has
// made its children without complaint.
func TestSamplesApply(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "session_*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("samples: %v %v", files, err)
	}
	files = append(files, filepath.Join(testenv.RepoRoot(), "examples", "sharded-store", "sessioncluster.yaml"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ns := namespace(t)
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := &sessionv1.SessionCluster{}
			if err := yaml.UnmarshalStrict(raw, sc); err != nil {
				t.Fatal(err)
			}
			sc.Namespace = ns
			create(t, sc)
			got := waitCondition(t, ns, sc.Name, sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
			if !slices.Equal(keys(ownedChildren(t, got)), expectedChildren(t, got)) {
				t.Errorf("children %v", keys(ownedChildren(t, got)))
			}
		})
	}
}
