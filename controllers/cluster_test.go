package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/rediscluster"
	"github.com/sessionops/session-operator/internal/render"
)

// fakeCluster stands in for the Redis Cluster engine: envtest runs no Redis. Per
// namespace it answers as a healthy cluster of the shards asked for, with the primaries
// and the nodes still needed a test sets, and records what it was asked.
type fakeCluster struct {
	mu    sync.Mutex
	calls map[string][]rediscluster.Spec
	// primary overrides a shard's primary address, by namespace and shard index.
	primary map[string]map[int]string
	// needed is NodesNeeded by namespace (0: as many as the spec asks for).
	needed map[string]int
	// uncovered is how many slots have no primary, by namespace.
	uncovered map[string]int
	// last is the state last reported, by namespace; Observe answers with it.
	last map[string]rediscluster.State
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{calls: map[string][]rediscluster.Spec{}, primary: map[string]map[int]string{}, needed: map[string]int{}, uncovered: map[string]int{}, last: map[string]rediscluster.State{}}
}

// nsOf is the namespace in a server's stable DNS name (pod.service.namespace.svc...).
func nsOf(addr string) string {
	parts := strings.Split(addr, ".")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

func (f *fakeCluster) Reconcile(_ context.Context, spec rediscluster.Spec, _ rediscluster.Auth) (rediscluster.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ns := nsOf(spec.Nodes[0])
	f.calls[ns] = append(f.calls[ns], spec)
	f.last[ns] = f.state(ns, spec.Nodes, spec.Shards, spec.PerShard)
	return f.last[ns], nil
}

func (f *fakeCluster) Observe(_ context.Context, nodes []string, _ rediscluster.Auth) (rediscluster.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.last[nsOf(nodes[0])]
	if !ok {
		return st, fmt.Errorf("fake: no server answered")
	}
	return st, nil
}

// failing stands, in fakeCluster.primary, for a shard whose primary fails.
const failing = "-"

func (f *fakeCluster) state(ns string, nodes []string, shards, per int) rediscluster.State {
	st := rediscluster.State{OK: true, SlotsCovered: render.ClusterSlots - f.uncovered[ns], NodesNeeded: shards * per}
	if n := f.needed[ns]; n > 0 {
		st.NodesNeeded, st.Busy = n, n != shards*per
	}
	for i := range shards {
		sh := rediscluster.ShardState{Index: i, Slots: render.ClusterSlots / shards}
		members := nodes[i*per : min(len(nodes), (i+1)*per)]
		sh.Primary = members[0]
		switch p := f.primary[ns][i]; p {
		case "":
		case failing: // the primary fails and no replica has taken over yet
			sh.Primary, st.OK = "", false
		default:
			sh.Primary = p
		}
		for _, m := range members {
			if m != sh.Primary {
				sh.Replicas = append(sh.Replicas, m)
			}
		}
		st.Shards = append(st.Shards, sh)
	}
	return st
}

func (f *fakeCluster) lastCall(ns string) (rediscluster.Spec, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls[ns]
	if len(c) == 0 {
		return rediscluster.Spec{}, 0
	}
	return c[len(c)-1], len(c)
}

func (f *fakeCluster) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func shardedCluster(ns string, shards int32) *sessionv1.SessionCluster {
	sc := storeCluster(ns)
	sc.Spec.Store.Shards = ptr.To(shards)
	sc.Spec.Store.Replicas = 2
	return sc
}

// runServers plays the kubelet for a sharded store: every ordinal below the StatefulSet's
// size exists with its Redis container running, and the StatefulSet and the app report
// them ready.
func runServers(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	sts := &appsv1.StatefulSet{}
	if err := get(t, ns, "shop-store", sts); err != nil {
		t.Fatal(err)
	}
	size := ptr.Deref(sts.Spec.Replicas, 1)
	for i := range size {
		name := fmt.Sprintf("shop-store-%d", i)
		pod := &corev1.Pod{}
		if err := get(t, ns, name, pod); apierrors.IsNotFound(err) {
			pod = &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: sts.Spec.Selector.MatchLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.4"}}},
			}
			if err := k8s.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 10*time.Second, func() error {
			if err := get(t, ns, name, pod); err != nil {
				return err
			}
			pod.Status.Phase = corev1.PodRunning
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "redis", Ready: true, Image: "redis:7.4", ImageID: "x",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
			return k8s.Status().Update(ctx, pod)
		})
	}
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop-store", sts); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{Replicas: size, ReadyReplicas: size, AvailableReplicas: size, ObservedGeneration: sts.Generation}
		return k8s.Status().Update(ctx, sts)
	})
	dep := &appsv1.Deployment{}
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop-web", dep); err != nil {
			return err
		}
		dep.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ObservedGeneration: dep.Generation}
		return k8s.Status().Update(ctx, dep)
	})
}

func storeSize(t *testing.T, ns string) int32 {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	if err := get(t, ns, "shop-store", sts); err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(sts.Spec.Replicas, 0)
}

// TestShardedStoreChildren: a sharded store is one StatefulSet of shards x replicas
// servers, a headless Service with the cluster bus, and no Sentinel or primary Service;
// the apps are wired for a cluster client.
func TestShardedStoreChildren(t *testing.T) {
	ns := namespace(t)
	create(t, shardedCluster(ns, 3))
	objs := waitChildren(t, ns, []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-auth"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-users"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-session"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-config"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-store-headless"}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
	})
	if sts := objs[5].(*appsv1.StatefulSet); *sts.Spec.Replicas != 6 || !strings.Contains(sts.Spec.Template.Spec.Containers[0].Command[1], "cluster-boot.sh") {
		t.Errorf("servers: %d, command %v", *sts.Spec.Replicas, sts.Spec.Template.Spec.Containers[0].Command)
	}
	if svc := objs[4].(*corev1.Service); len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Port != render.ClusterBusPort {
		t.Errorf("headless ports %+v", svc.Spec.Ports)
	}
	if cm := objs[3].(*corev1.ConfigMap); !strings.Contains(cm.Data["redis.conf"], "cluster-enabled yes") {
		t.Errorf("redis.conf:\n%s", cm.Data["redis.conf"])
	}
	if b := objs[2].(*corev1.Secret); !strings.HasPrefix(string(b.Data["cluster-nodes"]), "shop-store-0.shop-store-headless."+ns+".svc.cluster.local:6379,") {
		t.Errorf("binding cluster-nodes %q", b.Data["cluster-nodes"])
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range objs[6].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	if env["SESSION_REDIS_MODE"].Value != "cluster" || env["SESSION_REDIS_CLUSTER_NODES"].Value == "" ||
		env["SESSION_REDIS_PASSWORD"].ValueFrom == nil || env["SESSION_REDIS_SENTINEL_ADDRS"].Value != "" {
		t.Errorf("app env %+v", env)
	}
	for _, o := range []client.Object{
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "shop-sentinel"}},
	} {
		if err := get(t, ns, o.GetName(), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s exists for a sharded store (%v)", o, o.GetName(), err)
		}
	}
	// No server runs yet: the engine is not asked, and the store is not ready.
	waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, sessionv1.ReasonStoreNotReady)
	if _, n := clusters.lastCall(ns); n != 0 {
		t.Errorf("engine asked %d times before any server ran", n)
	}
}

// TestShardedStoreStatusFollowsTheCluster: once every server runs, the engine is asked
// with the servers' stable DNS names in ordinal order; status reports the shards, the
// slots and each shard's primary, Ready follows, and a shard's new primary is recorded as
// its lastFailover with an event.
func TestShardedStoreStatusFollowsTheCluster(t *testing.T) {
	ns := namespace(t)
	create(t, shardedCluster(ns, 3))
	waitChildren(t, ns, []client.Object{&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}}, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}}})
	runServers(t, ns)
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)
	spec, _ := clusters.lastCall(ns)
	host := func(i int) string {
		return fmt.Sprintf("shop-store-%d.shop-store-headless.%s.svc.cluster.local:6379", i, ns)
	}
	if spec.Shards != 3 || spec.PerShard != 2 || len(spec.Nodes) != 6 || spec.Nodes[0] != host(0) || spec.Nodes[5] != host(5) {
		t.Errorf("engine asked %+v", spec)
	}
	st := sc.Status.Store
	if st.SlotsCovered == nil || *st.SlotsCovered != render.ClusterSlots || len(st.Shards) != 3 || st.Primary != "" || st.SentinelsReady != 0 {
		t.Fatalf("store status %+v", st)
	}
	for i, sh := range st.Shards {
		if sh.Index != int32(i) || sh.Primary != fmt.Sprintf("shop-store-%d", 2*i) || sh.Replicas != 1 || sh.LastFailover != nil {
			t.Errorf("shard %d: %+v", i, sh)
		}
	}

	// While shard 1's primary fails, the engine names no primary; status keeps naming the
	// failing one, so that the takeover is recorded as a failover from it.
	clusters.set(func() { clusters.primary[ns] = map[int]string{1: failing} })
	poke(t, ns, "shop")
	sc = waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, sessionv1.ReasonClusterNotOK)
	if sh := sc.Status.Store.Shards[1]; sh.Primary != "shop-store-2" || sh.LastFailover != nil {
		t.Errorf("shard 1 while its primary fails: %+v", sh)
	}

	clusters.set(func() { clusters.primary[ns] = map[int]string{1: host(3)} })
	poke(t, ns, "shop")
	eventually(t, 20*time.Second, func() error {
		sc := &sessionv1.SessionCluster{}
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		sh := sc.Status.Store.Shards[1]
		if sh.Primary != "shop-store-3" || sh.LastFailover == nil || sh.LastFailover.From != "shop-store-2" || sh.LastFailover.To != "shop-store-3" {
			return fmt.Errorf("shard 1 %+v", sh)
		}
		if sc.Status.Store.Shards[0].LastFailover != nil {
			return fmt.Errorf("shard 0 recorded a failover it did not have")
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		_, err := eventWith(t, ns, sessionv1.EventFailover)
		return err
	})

	// Slots the cluster does not cover hold Ready back, naming them.
	clusters.set(func() { clusters.uncovered[ns] = 100 })
	poke(t, ns, "shop")
	c := waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, sessionv1.ReasonSlotsUncovered)
	if got := *c.Status.Store.SlotsCovered; got != render.ClusterSlots-100 {
		t.Errorf("slotsCovered %d", got)
	}
}

// TestShardedStoreResizesOnlyWhenDrained: more shards grow the StatefulSet at once;
// fewer keep it at its size until the engine no longer needs the servers of the shards
// that go, then shrink it.
func TestShardedStoreResizesOnlyWhenDrained(t *testing.T) {
	ns := namespace(t)
	create(t, shardedCluster(ns, 3))
	waitChildren(t, ns, []client.Object{&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}}, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}}})
	runServers(t, ns)
	waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)

	setShards := func(n int32) {
		eventually(t, 10*time.Second, func() error {
			sc := &sessionv1.SessionCluster{}
			if err := get(t, ns, "shop", sc); err != nil {
				return err
			}
			sc.Spec.Store.Shards = ptr.To(n)
			return k8s.Update(context.Background(), sc)
		})
	}
	setShards(4)
	eventually(t, 20*time.Second, func() error {
		if got := storeSize(t, ns); got != 8 {
			return fmt.Errorf("servers %d, want 8", got)
		}
		return nil
	})
	runServers(t, ns)
	eventually(t, 20*time.Second, func() error {
		if spec, _ := clusters.lastCall(ns); spec.Shards != 4 || len(spec.Nodes) != 8 {
			return fmt.Errorf("engine asked %+v", spec)
		}
		return nil
	})

	// Back to 3 while the engine still drains shard 3.
	clusters.set(func() { clusters.needed[ns] = 8 })
	setShards(3)
	eventually(t, 20*time.Second, func() error {
		if spec, _ := clusters.lastCall(ns); spec.Shards != 3 || len(spec.Nodes) != 8 {
			return fmt.Errorf("engine asked %+v", spec)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few passes
	if got := storeSize(t, ns); got != 8 {
		t.Fatalf("servers %d while the engine still needs 8", got)
	}
	clusters.set(func() { clusters.needed[ns] = 6 })
	eventually(t, 20*time.Second, func() error {
		if got := storeSize(t, ns); got != 6 {
			return fmt.Errorf("servers %d, want 6 once drained", got)
		}
		return nil
	})
}

// TestShardedStoreNoOpReconcileWritesNothing: on a healthy sharded store a pass asks the
// engine (which changes nothing on a healthy cluster) and writes nothing.
func TestShardedStoreNoOpReconcileWritesNothing(t *testing.T) {
	ns := namespace(t)
	sc := create(t, shardedCluster(ns, 3))
	waitChildren(t, ns, []client.Object{&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop-store"}}, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-web"}}})
	runServers(t, ns)
	waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)
	settle(t)
	writes, logged := managerWrites.Writes(), managerWrites.LoggedWrites()
	_, calls := clusters.lastCall(ns)
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
			if _, n := clusters.lastCall(ns); n < calls+i+1 {
				return fmt.Errorf("engine asked %d times, want %d", n, calls+i+1)
			}
			return nil
		})
	}
	time.Sleep(500 * time.Millisecond)
	if got := managerWrites.Writes() - writes; got != 0 {
		t.Errorf("no-op reconciles made %d writes: %v", got, managerWrites.WritesSince(logged))
	}
}
