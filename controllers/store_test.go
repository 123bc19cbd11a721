package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

func storeCluster(ns string) *sessionv1.SessionCluster {
	return &sessionv1.SessionCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: sessionv1.SessionClusterSpec{
			Mode:  sessionv1.ModeStore,
			Apps:  []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4", Replicas: ptr.To[int32](2)}},
			Store: &sessionv1.StoreSpec{},
		},
	}
}

// storeChildren are the objects a default Store-mode "shop" must have.
func storeChildren() []client.Object {
	return []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-auth"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-session"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-config"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-headless"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-users"}},
	}
}

func create(t *testing.T, sc *sessionv1.SessionCluster) *sessionv1.SessionCluster {
	t.Helper()
	if err := k8s.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	return sc
}

// waitChildren waits until every object exists and returns them filled in.
func waitChildren(t *testing.T, ns string, objs []client.Object) []client.Object {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		for _, o := range objs {
			if err := get(t, ns, o.GetName(), o); err != nil {
				return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
			}
		}
		return nil
	})
	return objs
}

func condition(t *testing.T, ns, name, typ string) (*metav1.Condition, *sessionv1.SessionCluster) {
	t.Helper()
	sc := &sessionv1.SessionCluster{}
	if err := get(t, ns, name, sc); err != nil {
		t.Fatal(err)
	}
	return meta.FindStatusCondition(sc.Status.Conditions, typ), sc
}

func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *sessionv1.SessionCluster {
	t.Helper()
	var sc *sessionv1.SessionCluster
	eventually(t, 20*time.Second, func() error {
		var c *metav1.Condition
		c, sc = condition(t, ns, name, typ)
		if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Errorf("condition %s is %+v, want %s/%s", typ, c, status, reason)
		}
		if sc.Status.ObservedGeneration != sc.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", sc.Status.ObservedGeneration, sc.Generation)
		}
		return nil
	})
	return sc
}

func TestStoreModeCreatesWiredChildren(t *testing.T) {
	ns := namespace(t)
	sc := create(t, storeCluster(ns))
	children := waitChildren(t, ns, storeChildren())
	if err := get(t, ns, "shop", sc); err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		if !metav1.IsControlledBy(c, sc) {
			t.Errorf("%T %s not controlled by the SessionCluster: %+v", c, c.GetName(), c.GetOwnerReferences())
		}
		ref := metav1.GetControllerOf(c)
		if ref == nil || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("%T %s owner reference does not block deletion, so garbage collection order is lost", c, c.GetName())
		}
		for _, l := range []string{render.LabelName, render.LabelInstance, render.LabelComponent, render.LabelPartOf, render.LabelManagedBy} {
			if c.GetLabels()[l] == "" {
				t.Errorf("%T %s lacks label %s", c, c.GetName(), l)
			}
		}
	}

	auth := children[0].(*corev1.Secret)
	binding := children[1].(*corev1.Secret)
	pw := string(auth.Data[render.AppPasswordKey("web")])
	if len(pw) != 32 {
		t.Fatalf("generated password has %d characters", len(pw))
	}
	if string(auth.Data[render.AppUsernameKey("web")]) != "app-web" {
		t.Errorf("auth secret keys %v", auth.Data)
	}
	usersSecret := children[len(children)-1].(*corev1.Secret)
	if acl := string(usersSecret.Data[render.ServerUsersKey]); !strings.Contains(acl, "user app-web on #"+render.PasswordHash(pw)+" ") ||
		!strings.Contains(acl, "user default off") || strings.Contains(acl, pw) {
		t.Errorf("users secret ACL lines:\n%s", acl)
	}
	if string(binding.Data["password"]) != pw || string(binding.Data["username"]) != "app-web" || string(binding.Data["type"]) != "redis" ||
		string(binding.Data["host"]) != "shop-store."+ns+".svc.cluster.local" || string(binding.Data["sentinel.master"]) != "shop" {
		t.Errorf("binding secret %v", binding.Data)
	}
	if binding.Type != render.BindingSecretType {
		t.Errorf("binding secret type %s", binding.Type)
	}

	dep := children[9].(*appsv1.Deployment)
	env := map[string]corev1.EnvVar{}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	for _, k := range []string{"SESSION_MODE", "SESSION_TTL", "SESSION_REDIS_SENTINEL_ADDRS", "SESSION_REDIS_SENTINEL_MASTER", "SESSION_REDIS_ADDR",
		"SESSION_REDIS_PASSWORD", "SESSION_REDIS_USERNAME", "REDIS_USERNAME", "SPRING_DATA_REDIS_USERNAME",
		"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
		"SPRING_DATA_REDIS_SENTINEL_MASTER", "SPRING_DATA_REDIS_SENTINEL_NODES", "SPRING_DATA_REDIS_PASSWORD"} {
		if _, ok := env[k]; !ok {
			t.Errorf("app container lacks %s", k)
		}
	}
	if ref := env["SESSION_REDIS_PASSWORD"].ValueFrom; ref == nil || ref.SecretKeyRef.Name != "shop-store-auth" {
		t.Errorf("SESSION_REDIS_PASSWORD %+v", env["SESSION_REDIS_PASSWORD"])
	}

	sc = waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
	if sc.Status.Binding == nil || sc.Status.Binding.Name != "shop-session" {
		t.Errorf("status.binding %+v", sc.Status.Binding)
	}
	if c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready with no pod running: %+v", c)
	}
	// No password anywhere but Secrets: not in status, not in any ConfigMap or workload.
	for _, c := range append(children, sc) {
		if _, ok := c.(*corev1.Secret); ok {
			continue
		}
		if raw := fmt.Sprintf("%+v", c); strings.Contains(raw, pw) {
			t.Errorf("%T %s contains the password", c, c.GetName())
		}
	}
}

func TestChildDeletedOrEditedIsRestored(t *testing.T) {
	ns := namespace(t)
	create(t, storeCluster(ns))
	children := waitChildren(t, ns, storeChildren())
	cm := children[2].(*corev1.ConfigMap)
	dep := children[9].(*appsv1.Deployment)
	sts := children[7].(*appsv1.StatefulSet)

	if err := k8s.Delete(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		d := &appsv1.Deployment{}
		if err := get(t, ns, "shop-web", d); err != nil {
			return err
		}
		if d.UID == dep.UID {
			return errors.New("not yet deleted")
		}
		return nil
	})

	conf := cm.Data["redis.conf"]
	cm.Data["redis.conf"] = "maxmemory 1\n"
	if err := k8s.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(sts.DeepCopy())
	sts.Spec.Replicas = ptr.To[int32](7)
	if err := k8s.Patch(context.Background(), sts, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, cm.Name, cm); err != nil {
			return err
		}
		if cm.Data["redis.conf"] != conf {
			return errors.New("redis.conf not restored")
		}
		if err := get(t, ns, sts.Name, sts); err != nil {
			return err
		}
		if *sts.Spec.Replicas != 3 {
			return fmt.Errorf("store replicas %d not restored", *sts.Spec.Replicas)
		}
		return nil
	})
}

func TestSpecChangeUpdatesChildrenAndRollsWiring(t *testing.T) {
	ns := namespace(t)
	create(t, storeCluster(ns))
	children := waitChildren(t, ns, storeChildren())
	dep := children[9].(*appsv1.Deployment)
	sts := children[7].(*appsv1.StatefulSet)
	wiring := dep.Spec.Template.Annotations[render.AnnotationWiringHash]
	config := sts.Spec.Template.Annotations[render.AnnotationConfigHash]
	if wiring == "" || config == "" {
		t.Fatal("missing hashes")
	}

	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) {
		s.Session.TTL = &metav1.Duration{Duration: 2 * time.Hour}
		mem := resource.MustParse("512Mi")
		s.Store.MaxMemory = &mem
		s.Apps[0].Replicas = ptr.To[int32](4)
	})
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, dep.Name, dep); err != nil {
			return err
		}
		if dep.Spec.Template.Annotations[render.AnnotationWiringHash] == wiring {
			return errors.New("wiring hash unchanged")
		}
		if *dep.Spec.Replicas != 4 {
			return fmt.Errorf("app replicas %d", *dep.Spec.Replicas)
		}
		ttl := ""
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "SESSION_TTL" {
				ttl = e.Value
			}
		}
		if ttl != "2h0m0s" {
			return fmt.Errorf("SESSION_TTL %q", ttl)
		}
		if err := get(t, ns, sts.Name, sts); err != nil {
			return err
		}
		if sts.Spec.Template.Annotations[render.AnnotationConfigHash] == config {
			return errors.New("store config hash unchanged")
		}
		cm := &corev1.ConfigMap{}
		if err := get(t, ns, "shop-store-config", cm); err != nil {
			return err
		}
		if !strings.Contains(cm.Data["redis.conf"], "maxmemory 536870912") {
			return errors.New("maxmemory not updated")
		}
		return nil
	})
}

// TestNoOpReconcileWritesNothing proves that a pass with nothing to change makes no write
// request at all, and that no child's resourceVersion moves.
func TestNoOpReconcileWritesNothing(t *testing.T) {
	ns := namespace(t)
	sc := create(t, storeCluster(ns))
	children := waitChildren(t, ns, storeChildren())
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, "")
	settle(t)

	versions := map[string]string{}
	for _, c := range children {
		if err := get(t, ns, c.GetName(), c); err != nil {
			t.Fatal(err)
		}
		versions[fmt.Sprintf("%T/%s", c, c.GetName())] = c.GetResourceVersion()
	}
	writes, logged, before := managerWrites.Writes(), managerWrites.LoggedWrites(), reconciles(t)
	// Each poke is an edit that is not a spec change: the controller reconciles and
	// must find nothing to do.
	for i := range 3 {
		if err := get(t, ns, "shop", sc); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(sc.DeepCopy())
		metav1.SetMetaDataAnnotation(&sc.ObjectMeta, "test/poke", fmt.Sprint(i))
		if err := k8s.Patch(context.Background(), sc, patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			if reconciles(t) < before+float64(i+1) {
				return errors.New("no reconcile yet")
			}
			return nil
		})
	}
	time.Sleep(500 * time.Millisecond)
	if got := managerWrites.Writes() - writes; got != 0 {
		t.Errorf("no-op reconciles made %d writes: %v", got, managerWrites.WritesSince(logged))
	}
	for _, c := range children {
		key := fmt.Sprintf("%T/%s", c, c.GetName())
		if err := get(t, ns, c.GetName(), c); err != nil {
			t.Fatal(err)
		}
		if c.GetResourceVersion() != versions[key] {
			t.Errorf("%s resourceVersion moved from %s to %s", key, versions[key], c.GetResourceVersion())
		}
	}
}

// settle waits until the manager has made no write for a second.
func settle(t *testing.T) {
	t.Helper()
	last := managerWrites.Writes()
	quiet := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(quiet) < time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("manager never stopped writing: %v", managerWrites.WritesSince(max(0, managerWrites.LoggedWrites()-10)))
		}
		time.Sleep(100 * time.Millisecond)
		if w := managerWrites.Writes(); w != last {
			last, quiet = w, time.Now()
		}
	}
}

// runPods plays kubelet: it creates the store's pods and marks every workload ready.
func runPods(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	for i := range 3 {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("shop-store-%d", i), Namespace: ns,
				Labels: map[string]string{
					render.LabelInstance: "shop", render.LabelComponent: render.ComponentStore, render.LabelManagedBy: render.ManagedBy,
				},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.4"}}},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"shop-store", "shop-sentinel"} {
		sts := &appsv1.StatefulSet{}
		if err := get(t, ns, name, sts); err != nil {
			t.Fatal(err)
		}
		sts.Status = appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3, ObservedGeneration: sts.Generation}
		if err := k8s.Status().Update(ctx, sts); err != nil {
			t.Fatal(err)
		}
	}
	dep := &appsv1.Deployment{}
	if err := get(t, ns, "shop-web", dep); err != nil {
		t.Fatal(err)
	}
	dep.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ObservedGeneration: dep.Generation}
	if err := k8s.Status().Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
}

func poke(t *testing.T, ns, name string) {
	t.Helper()
	sc := &sessionv1.SessionCluster{}
	if err := get(t, ns, name, sc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(sc.DeepCopy())
	metav1.SetMetaDataAnnotation(&sc.ObjectMeta, "test/poke", time.Now().String())
	if err := k8s.Patch(context.Background(), sc, patch); err != nil {
		t.Fatal(err)
	}
}

func roles(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := range 3 {
		pod := &corev1.Pod{}
		if err := get(t, ns, fmt.Sprintf("shop-store-%d", i), pod); err != nil {
			t.Fatal(err)
		}
		out[pod.Name] = pod.Labels[render.LabelRole]
	}
	return out
}

func TestStatusFollowsTheStoreAndRecordsFailover(t *testing.T) {
	ns := namespace(t)
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	host := func(i int) string {
		return fmt.Sprintf("shop-store-%d.shop-store-headless.%s.svc.cluster.local", i, ns)
	}
	observer.Set(key, store.Observation{PrimaryHost: host(0), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 42})
	create(t, storeCluster(ns))
	waitChildren(t, ns, storeChildren())
	waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, sessionv1.ReasonStoreNotReady)

	runPods(t, ns)
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)
	if s := sc.Status.Store; s == nil || s.Primary != "shop-store-0" || s.ReadyReplicas != 3 || s.SentinelsReady != 3 || s.LastFailover != nil {
		t.Fatalf("store status %+v", sc.Status.Store)
	}
	if len(sc.Status.Apps) != 1 || sc.Status.Apps[0].ReadyReplicas != 2 {
		t.Errorf("apps status %+v", sc.Status.Apps)
	}
	eventually(t, 10*time.Second, func() error {
		if r := roles(t, ns); r["shop-store-0"] != render.RolePrimary || r["shop-store-1"] != render.RoleReplica || r["shop-store-2"] != render.RoleReplica {
			return fmt.Errorf("roles %v", r)
		}
		return nil
	})
	if v := metricValue(t, "session_operator_sessions_stored", map[string]string{"namespace": ns}); v != 42 {
		t.Errorf("sessions stored metric %v", v)
	}

	failovers := metricValue(t, "session_operator_failovers_total", map[string]string{"namespace": ns})
	observer.Set(key, store.Observation{PrimaryHost: host(1), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 42,
		LastSwitch: &store.Switch{From: host(0), To: host(1), At: time.Now(), Duration: 6200 * time.Millisecond}})
	poke(t, ns, "shop")
	eventually(t, 10*time.Second, func() error {
		_, sc = condition(t, ns, "shop", sessionv1.ConditionReady)
		f := sc.Status.Store.LastFailover
		if sc.Status.Store.Primary != "shop-store-1" || f == nil || f.From != "shop-store-0" || f.To != "shop-store-1" {
			return fmt.Errorf("store status %+v", sc.Status.Store)
		}
		if f.Duration == nil || f.Duration.Duration != 6200*time.Millisecond {
			return fmt.Errorf("failover duration %+v", f.Duration)
		}
		if r := roles(t, ns); r["shop-store-1"] != render.RolePrimary || r["shop-store-0"] != render.RoleReplica {
			return fmt.Errorf("roles %v", r)
		}
		_, err := eventWith(t, ns, sessionv1.EventFailover)
		return err
	})
	if got := metricValue(t, "session_operator_failovers_total", map[string]string{"namespace": ns}); got != failovers+1 {
		t.Errorf("failovers metric %v, want %v", got, failovers+1)
	}

	// A Sentinel announcement wakes the controller without any Kubernetes event.
	observer.Set(key, store.Observation{PrimaryHost: host(2), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 42})
	waker.Wake(key)
	eventually(t, 10*time.Second, func() error {
		if _, sc = condition(t, ns, "shop", sessionv1.ConditionReady); sc.Status.Store.Primary != "shop-store-2" {
			return fmt.Errorf("primary %s after a wake-up", sc.Status.Store.Primary)
		}
		return nil
	})

	observer.Fail(key, errors.New("dial tcp: connection refused"))
	poke(t, ns, "shop")
	sc = waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, sessionv1.ReasonSentinelUnreachable)
	if sc.Status.Store.Primary != "shop-store-2" {
		t.Errorf("an unreachable Sentinel must not erase the last known primary: %+v", sc.Status.Store)
	}
}

func TestRefusesToAdoptAStrangersObject(t *testing.T) {
	ns := namespace(t)
	stranger := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-store-config", Namespace: ns},
		Data:       map[string]string{"mine": "yes"},
	}
	if err := k8s.Create(context.Background(), stranger); err != nil {
		t.Fatal(err)
	}
	create(t, storeCluster(ns))
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonNameConflict)
	if c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionDegraded); !strings.Contains(c.Message, "ConfigMap shop-store-config") {
		t.Errorf("message does not name the object: %s", c.Message)
	}
	eventually(t, 10*time.Second, func() error { _, err := eventWith(t, ns, sessionv1.EventNameConflict); return err })
	after := &corev1.ConfigMap{}
	if err := get(t, ns, stranger.Name, after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != stranger.ResourceVersion || len(after.OwnerReferences) != 0 {
		t.Error("the stranger's ConfigMap was modified")
	}
	// Nothing else was built beside it: no half stack.
	for _, o := range []client.Object{&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}}, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}}, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-auth"}}} {
		if err := get(t, ns, o.GetName(), o); err == nil {
			t.Errorf("%T %s was created despite the conflict", o, o.GetName())
		}
	}
	// The stranger's object carries none of the operator's labels, so its deletion is no
	// event for the controller; the pass after the problem requeue (or any edit) recovers.
	if err := k8s.Delete(context.Background(), stranger); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "shop")
	waitChildren(t, ns, storeChildren())
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
}

// A name the cache does not hold is claimed (created only while free) for the children
// that run nothing, and read first for the others: a stranger's Deployment in the way
// stops the pass, and every child claimed beside it is taken back.
func TestTakesBackClaimsBesideAStrangersWorkload(t *testing.T) {
	ns := namespace(t)
	stranger := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "theirs"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "theirs:1"}}},
			},
		},
	}
	if err := k8s.Create(context.Background(), stranger); err != nil {
		t.Fatal(err)
	}
	create(t, storeCluster(ns))
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonNameConflict)
	after := &appsv1.Deployment{}
	if err := get(t, ns, stranger.Name, after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != stranger.ResourceVersion || len(after.OwnerReferences) != 0 {
		t.Error("the stranger's Deployment was modified")
	}
	// The claims are taken back: none of the SessionCluster's children is left.
	eventually(t, 10*time.Second, func() error {
		for _, o := range storeChildren() {
			if _, ok := o.(*appsv1.Deployment); ok {
				continue
			}
			if err := get(t, ns, o.GetName(), o); err == nil {
				return fmt.Errorf("%T %s is left beside the conflict", o, o.GetName())
			}
		}
		return nil
	})
	if err := k8s.Delete(context.Background(), stranger); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "shop")
	waitChildren(t, ns, storeChildren())
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
}

func TestUserPasswordSecret(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Store.Auth = sessionv1.StoreAuth{ExistingSecret: "shop-redis", ExistingSecretKey: "pw"}
	create(t, sc)
	sc = waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonAuthSecretInvalid)
	if c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionDegraded); !strings.Contains(c.Message, "spec.store.auth.existingSecret") {
		t.Errorf("message does not name the field: %s", c.Message)
	}
	if err := get(t, ns, "shop-store", &appsv1.StatefulSet{}); err == nil {
		t.Error("store created without its password")
	}

	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-redis", Namespace: ns}, Data: map[string][]byte{"pw": []byte("has a space")}}
	if err := k8s.Create(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "shop")
	eventually(t, 20*time.Second, func() error {
		c, _ := condition(t, ns, "shop", sessionv1.ConditionDegraded)
		if c == nil || !strings.Contains(c.Message, "contains") || strings.Contains(c.Message, "' '") {
			return fmt.Errorf("degraded %+v", c)
		}
		return nil
	})

	bad.Data["pw"] = []byte("correct-horse-battery")
	if err := k8s.Update(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "shop")
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
	binding := &corev1.Secret{}
	if err := get(t, ns, "shop-session", binding); err != nil {
		t.Fatal(err)
	}
	if string(binding.Data["password"]) != "correct-horse-battery" {
		t.Error("binding secret does not carry the user's password")
	}
	names := &corev1.Secret{}
	if err := get(t, ns, "shop-store-auth", names); err != nil {
		t.Fatal(err)
	}
	if len(names.Data) != 1 || string(names.Data["web.username"]) != "app-web" {
		t.Errorf("with the user's password the auth secret holds only user names: %v", names.Data)
	}
	dep := &appsv1.Deployment{}
	if err := get(t, ns, "shop-web", dep); err != nil {
		t.Fatal(err)
	}
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "REDIS_PASSWORD" && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "shop-redis" || e.ValueFrom.SecretKeyRef.Key != "pw") {
			t.Errorf("REDIS_PASSWORD %+v", e)
		}
	}
}

func TestDeletedClusterLeavesChildrenToTheGarbageCollector(t *testing.T) {
	ns := namespace(t)
	sc := create(t, storeCluster(ns))
	children := waitChildren(t, ns, storeChildren())
	if err := get(t, ns, "shop", sc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop", &sessionv1.SessionCluster{}); err == nil {
			return errors.New("SessionCluster still there: a finalizer would block deletion")
		}
		return nil
	})
	for _, c := range children {
		ref := metav1.GetControllerOf(c)
		if ref == nil || ref.UID != sc.UID {
			t.Errorf("%T %s would survive its SessionCluster", c, c.GetName())
		}
	}
}

// TestPersistenceChangeReplacesTheStatefulSet changes what a StatefulSet cannot change in
// place (its claim templates): the operator replaces it around the running pods.
func TestPersistenceChangeReplacesTheStatefulSet(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}
	create(t, sc)
	sts := waitChildren(t, ns, storeChildren())[7].(*appsv1.StatefulSet)
	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) { s.Store.Persistence.Size = resource.MustParse("2Gi") })
	// envtest runs no garbage collector: play its part and release the orphaning finalizer.
	eventually(t, 20*time.Second, func() error {
		old := &appsv1.StatefulSet{}
		if err := get(t, ns, sts.Name, old); err != nil {
			return err
		}
		if old.UID != sts.UID {
			return nil
		}
		if old.DeletionTimestamp == nil {
			return errors.New("old statefulset not deleted")
		}
		old.Finalizers = nil
		return k8s.Update(context.Background(), old)
	})
	eventually(t, 20*time.Second, func() error {
		cur := &appsv1.StatefulSet{}
		if err := get(t, ns, sts.Name, cur); err != nil {
			return err
		}
		if cur.UID == sts.UID {
			return errors.New("not replaced yet")
		}
		if got := cur.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "2Gi" {
			return fmt.Errorf("claim size %s", got.String())
		}
		return nil
	})
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
	if _, err := eventWith(t, ns, sessionv1.EventStatefulSetReplaced); err != nil {
		t.Error(err)
	}
}
