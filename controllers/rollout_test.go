package controllers

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// fakeAdmin stands for the running servers and Sentinels, which envtest does not have:
// every registered store has a primary and in-sync replicas; a switchover promotes the
// first candidate.
type fakeAdmin struct {
	mu      sync.Mutex
	primary map[types.NamespacedName]string
	hosts   map[string]types.NamespacedName
	log     map[types.NamespacedName][]string
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{primary: map[types.NamespacedName]string{}, hosts: map[string]types.NamespacedName{}, log: map[types.NamespacedName][]string{}}
}

func (f *fakeAdmin) register(key types.NamespacedName, primary string, hosts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.primary[key] = primary
	for _, h := range hosts {
		f.hosts[h] = key
	}
}

func (f *fakeAdmin) record(key types.NamespacedName, what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log[key] = append(f.log[key], what)
}

func (f *fakeAdmin) steps(key types.NamespacedName) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log[key]...)
}

func (f *fakeAdmin) Server(_ context.Context, addr string, _ store.Target) store.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	host, _, _ := net.SplitHostPort(addr)
	key, ok := f.hosts[host]
	if !ok {
		return store.Server{Host: host}
	}
	if f.primary[key] != host {
		return store.Server{Host: host, Reachable: true, Role: "slave", MasterHost: f.primary[key], LinkUp: true, Offset: 100}
	}
	s := store.Server{Host: host, Reachable: true, Role: "master", Offset: 100, Replicas: map[string]int64{}}
	for h, k := range f.hosts {
		if k == key && h != host {
			s.Replicas[h] = 100
		}
	}
	return s
}

func (f *fakeAdmin) Sentinels(_ context.Context, t store.Target) store.SentinelView {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.primary[t.Cluster]
	if !ok {
		return store.SentinelView{}
	}
	return store.SentinelView{Reachable: len(t.Sentinels), Primary: p, Named: map[string]int{p: len(t.Sentinels)}}
}

func (f *fakeAdmin) Switchover(_ context.Context, t store.Target, primary string, candidates []string, _ int, _ time.Duration) (string, error) {
	f.mu.Lock()
	if f.primary[t.Cluster] != primary || len(candidates) == 0 {
		f.mu.Unlock()
		return "", fmt.Errorf("%w: primary is %s", store.ErrNotSafe, f.primary[t.Cluster])
	}
	f.primary[t.Cluster] = candidates[0]
	f.mu.Unlock()
	f.record(t.Cluster, "switchover "+render.PodFromHost(primary)+" -> "+render.PodFromHost(candidates[0]))
	return candidates[0], nil
}

// playKubelet makes the store's pods as a StatefulSet and kubelet would: every ordinal
// below the StatefulSet's replicas exists, Ready, labelled with the revision it was made
// from; a deleted one is recorded and made again at the update revision.
func playKubelet(t *testing.T, ns string, key types.NamespacedName, rev string) {
	t.Helper()
	ctx := context.Background()
	sts := &appsv1.StatefulSet{}
	if err := get(t, ns, "shop-store", sts); err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pods.Items {
		have[p.Name] = true
	}
	for i := 0; i < int(ptr.Deref(sts.Spec.Replicas, 1)); i++ {
		name := fmt.Sprintf("shop-store-%d", i)
		if have[name] {
			continue
		}
		if rev != "r1" {
			admin.record(key, "delete "+name)
		}
		labels := map[string]string{appsv1.ControllerRevisionHashLabelKey: rev}
		for k, v := range sts.Spec.Selector.MatchLabels {
			labels[k] = v
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis:7.4"}}},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		// The operator labels pods with their role meanwhile: write on the latest version.
		eventually(t, 10*time.Second, func() error {
			if err := get(t, ns, name, pod); err != nil {
				return err
			}
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			return k8s.Status().Update(ctx, pod)
		})
	}
}

func setSetStatus(t *testing.T, ns, name, rev string, ready int32) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		sts := &appsv1.StatefulSet{}
		if err := get(t, ns, name, sts); err != nil {
			return err
		}
		sts.Status.ObservedGeneration = sts.Generation
		sts.Status.Replicas, sts.Status.ReadyReplicas = ready, ready
		sts.Status.UpdateRevision, sts.Status.CurrentRevision = rev, "r1"
		return k8s.Status().Update(context.Background(), sts)
	})
}

// TestRolloutReplacesReplicasThenSwitchesOverOnce: with a new server template the
// operator deletes the replicas one at a time (highest ordinal first), then hands the
// primary over once, then replaces the old primary; the primary changes exactly once.
func TestRolloutReplacesReplicasThenSwitchesOverOnce(t *testing.T) {
	ns := namespace(t)
	create(t, storeCluster(ns))
	waitChildren(t, ns, storeChildren())
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	n := render.NamesFor(storeCluster(ns), "")
	hosts := n.StoreHosts(3)
	admin.register(key, hosts[0], hosts)
	observer.Set(key, store.Observation{PrimaryHost: hosts[0], SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 0})
	playKubelet(t, ns, key, "r1")
	setSetStatus(t, ns, "shop-sentinel", "r1", 3)
	setSetStatus(t, ns, "shop-store", "r1", 3)

	// A new template: the StatefulSet controller would give it revision r2.
	setSetStatus(t, ns, "shop-store", "r2", 3)
	want := []string{"delete shop-store-2", "delete shop-store-1", "switchover shop-store-0 -> shop-store-1", "delete shop-store-0"}
	eventually(t, 60*time.Second, func() error {
		playKubelet(t, ns, key, "r2")
		if got := admin.steps(key); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("steps %v, want %v", got, want)
		}
		return nil
	})
	// Done: nothing more happens, and status says no rollout is under way.
	time.Sleep(3 * time.Second)
	playKubelet(t, ns, key, "r2")
	if got := admin.steps(key); !reflect.DeepEqual(got, want) {
		t.Errorf("after the rollout: %v", got)
	}
	eventually(t, 20*time.Second, func() error {
		_, sc := condition(t, ns, "shop", "Ready")
		if sc.Status.Store == nil || sc.Status.Store.Rollout != nil {
			return fmt.Errorf("store status %+v", sc.Status.Store)
		}
		return nil
	})
	var events []string
	for _, reason := range []string{"StorePodReplaced", "Switchover"} {
		if e, err := eventWith(t, ns, reason); err != nil {
			t.Error(err)
		} else {
			events = append(events, e.Note)
		}
	}
	t.Logf("events: %s", strings.Join(events, " | "))
}

// TestScaleDownMovesThePrimaryFirst: store.replicas 5 -> 3 with the primary on
// shop-store-4: the StatefulSet keeps 5 pods until the primary has been handed over to a
// server that stays, then shrinks; no pod is deleted by the operator.
func TestScaleDownMovesThePrimaryFirst(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Store.Replicas = 5
	create(t, sc)
	waitChildren(t, ns, storeChildren())
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	hosts := render.NamesFor(sc, "").StoreHosts(5)
	admin.register(key, hosts[4], hosts)
	observer.Set(key, store.Observation{PrimaryHost: hosts[4], SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 0})
	playKubelet(t, ns, key, "r1")
	setSetStatus(t, ns, "shop-sentinel", "r1", 3)
	setSetStatus(t, ns, "shop-store", "r1", 5)

	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		sc.Spec.Store.Replicas = 3
		return k8s.Update(context.Background(), sc)
	})
	sawHeld := false
	eventually(t, 60*time.Second, func() error {
		sts := &appsv1.StatefulSet{}
		if err := get(t, ns, "shop-store", sts); err != nil {
			return err
		}
		steps := admin.steps(key)
		switch r := ptr.Deref(sts.Spec.Replicas, 0); {
		case r == 5 && len(steps) == 0:
			sawHeld = true
			setSetStatus(t, ns, "shop-store", "r1", 5)
			return fmt.Errorf("held at 5, no switchover yet")
		case r == 5:
			setSetStatus(t, ns, "shop-store", "r1", 5)
			return fmt.Errorf("held at 5 after %v", steps)
		case r == 3 && len(steps) == 0:
			t.Fatalf("scaled to 3 with the primary on shop-store-4")
			return nil
		case r == 3:
			if want := []string{"switchover shop-store-4 -> shop-store-0"}; !reflect.DeepEqual(steps, want) {
				t.Fatalf("steps %v, want %v", steps, want)
			}
			return nil
		default:
			return fmt.Errorf("replicas %d", r)
		}
	})
	if !sawHeld {
		t.Log("the StatefulSet was never seen held at 5 (the switchover came first)")
	}
}
