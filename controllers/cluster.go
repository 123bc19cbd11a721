package controllers

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/rediscluster"
	"github.com/sessionops/session-operator/internal/render"
)

// ClusterEngine builds, heals and reshards a sharded store's Redis Cluster;
// rediscluster's functions talk to the real servers, envtest (which runs no pods) uses a
// fake.
type ClusterEngine interface {
	Reconcile(ctx context.Context, spec rediscluster.Spec, auth rediscluster.Auth) (rediscluster.State, error)
	Observe(ctx context.Context, nodes []string, auth rediscluster.Auth) (rediscluster.State, error)
}

type redisCluster struct{}

func (redisCluster) Reconcile(ctx context.Context, s rediscluster.Spec, a rediscluster.Auth) (rediscluster.State, error) {
	return rediscluster.Reconcile(ctx, s, a)
}

func (redisCluster) Observe(ctx context.Context, nodes []string, a rediscluster.Auth) (rediscluster.State, error) {
	return rediscluster.Observe(ctx, nodes, a)
}

func (r *SessionClusterReconciler) clusterEngine() ClusterEngine {
	if r.Cluster != nil {
		return r.Cluster
	}
	return redisCluster{}
}

// planCluster moves a sharded store's Redis Cluster toward the spec: it hands every
// server of the StatefulSet, by its stable DNS name, to the engine, which meets them,
// assigns slots, places replicas, forgets nodes gone for good and migrates slots when the
// shard count changed. It runs only once every server of the StatefulSet runs and is
// ready (a primary answers, a replica has its link up): a node the engine cannot reach is
// not one to place or to drain, and a primary restarting after a crash waits, running but
// not ready, for its replica to take over (cluster-boot.sh), which the engine must not race. It also sizes the StatefulSet:
// growing at once, shrinking only after the engine has drained the shards that go (the
// StatefulSet stays at max(shards x replicas, what the engine still needs)). It takes the
// place of planStore, which rolls a Sentinel store.
func (r *SessionClusterReconciler) planCluster(ctx context.Context, p *pass) error {
	if !p.spec.Sharded() || p.problem != nil || p.inputs.Internal.Operator == "" {
		return nil
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	sts, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Store())
	if err != nil || sts == nil {
		return err // no servers yet: applyChildren makes them
	}
	want := render.StoreServers(p.spec.Store)
	cur := ptr.Deref(sts.Spec.Replicas, 1)
	defer r.holdStoreSize(p, n)
	if cur < want {
		// Grow first; the new servers join the cluster once they run.
		p.storeReplicas = ptr.To(want)
		p.requeueSoon = true
		return nil
	}
	// Never below the current size until the engine says the ordinals above want are drained.
	p.storeReplicas = ptr.To(cur)
	ready, err := r.serversReady(ctx, p, sts.Name, cur)
	if err != nil {
		return err
	}
	if ready < cur {
		p.clusterWaiting = fmt.Sprintf("%d/%d Redis servers running and ready", ready, cur)
		p.requeueSoon = true
		return nil
	}
	st, err := r.clusterEngine().Reconcile(ctx, rediscluster.Spec{
		Nodes:    render.HostPorts(n.StoreHosts(cur), render.RedisPort),
		Shards:   int(*p.spec.Store.Shards),
		PerShard: int(p.spec.Store.Replicas),
	}, r.clusterAuth(p))
	if err != nil {
		p.clusterErr = err
		log.FromContext(ctx).Info("redis cluster not reconciled yet", "reason", err.Error())
		p.requeueSoon = true
		return nil
	}
	p.cluster = &st
	p.storeReplicas = ptr.To(max(want, int32(st.NodesNeeded)))
	if st.Busy || !st.OK || st.SlotsCovered < render.ClusterSlots || *p.storeReplicas != cur {
		p.requeueSoon = true
	}
	return nil
}

// serversReady counts the servers with ordinals below size whose pod runs and is Ready.
func (r *SessionClusterReconciler) serversReady(ctx context.Context, p *pass, set string, size int32) (int32, error) {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(p.sc.Namespace), client.MatchingLabels(render.Selector(p.sc, render.ComponentStore))); err != nil {
		return 0, fmt.Errorf("listing store pods: %w", err)
	}
	var n int32
	for i := range pods.Items {
		pod := &pods.Items[i]
		ord, ok := ordinalOf(pod.Name, set)
		// A Ready pod's containers all run and pass their probes; the cache keeps no
		// container statuses (slimPod), and needs none.
		if ok && ord < int(size) && pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && podReady(pod) {
			n++
		}
	}
	return n, nil
}

func (r *SessionClusterReconciler) clusterAuth(p *pass) rediscluster.Auth {
	return rediscluster.Auth{Username: render.UserOperator, Password: p.inputs.Internal.Operator}
}

// observeCluster reads a sharded store's StatefulSet and, when planCluster did not ask the
// engine this pass (a server down, an earlier step failed), what the servers that answer
// report, so that status follows a failover even while a server is away.
func (r *SessionClusterReconciler) observeCluster(ctx context.Context, p *pass, n render.Names) error {
	var err error
	if p.storeSet, err = r.getStatefulSet(ctx, p.sc.Namespace, n.Store()); err != nil {
		return err
	}
	p.storeObserved = p.storeSet == nil || p.inputs.Internal.Operator != ""
	if p.storeSet == nil || p.inputs.Internal.Operator == "" || p.cluster != nil {
		return nil
	}
	size := max(ptr.Deref(p.storeSet.Spec.Replicas, 1), render.StoreServers(p.spec.Store))
	st, err := r.clusterEngine().Observe(ctx, render.HostPorts(n.StoreHosts(size), render.RedisPort), r.clusterAuth(p))
	if err != nil {
		if p.clusterErr == nil {
			p.clusterErr = err
		}
		log.FromContext(ctx).V(1).Info("redis cluster not observed", "reason", err.Error())
		return nil
	}
	p.cluster = &st
	return nil
}

// shardStatuses reports each shard as the cluster does, and a change of a shard's primary
// as its lastFailover. The first such change this pass is returned for the event and the
// failover metric.
func shardStatuses(p *pass, out *sessionv1.StoreStatus) *failover {
	prev := map[int32]sessionv1.ShardStatus{}
	if s := p.sc.Status.Store; s != nil {
		out.Shards = s.Shards
		out.SlotsCovered = s.SlotsCovered
		for _, sh := range s.Shards {
			prev[sh.Index] = sh
		}
	}
	if p.cluster == nil {
		return nil
	}
	var fo *failover
	out.SlotsCovered = ptr.To(int32(p.cluster.SlotsCovered))
	out.Shards = make([]sessionv1.ShardStatus, 0, len(p.cluster.Shards))
	for _, sh := range p.cluster.Shards {
		s := sessionv1.ShardStatus{Index: int32(sh.Index), Primary: podOf(sh.Primary), Replicas: int32(len(sh.Replicas)), Slots: int32(sh.Slots)}
		old, seen := prev[s.Index]
		if seen {
			s.LastFailover = old.LastFailover.DeepCopy()
			// A failing primary keeps its slots until a replica takes over, and the engine
			// names no primary meanwhile; keeping the last one named lets the takeover be
			// recorded as a failover from it rather than from nobody.
			if s.Primary == "" {
				s.Primary = old.Primary
			}
		}
		if seen && old.Primary != "" && s.Primary != "" && old.Primary != s.Primary {
			s.LastFailover = &sessionv1.FailoverRecord{Time: metav1.NewTime(p.now), From: old.Primary, To: s.Primary}
			if fo == nil {
				fo = &failover{from: old.Primary, to: s.Primary}
			}
		}
		out.Shards = append(out.Shards, s)
	}
	return fo
}

// podOf is the pod name of a server address (stable DNS name and port).
func podOf(addr string) string {
	if addr == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return render.PodFromHost(host)
}

// clusterReadiness: a sharded store is ready when the cluster says ok, every slot has a
// primary and every server is ready.
func clusterReadiness(p *pass, s *sessionv1.StoreStatus) (bool, string, string) {
	want := render.StoreServers(p.spec.Store)
	shards := *p.spec.Store.Shards
	switch {
	case p.storeSet == nil:
		return false, sessionv1.ReasonProgressing, "Store is being created"
	case p.cluster == nil && p.clusterWaiting != "":
		return false, sessionv1.ReasonStoreNotReady, p.clusterWaiting + "; the Redis Cluster is built and healed once every server runs"
	case p.cluster == nil && p.clusterErr != nil:
		return false, sessionv1.ReasonClusterUnreachable, "No Redis server answered: " + p.clusterErr.Error()
	case p.cluster == nil:
		return false, sessionv1.ReasonProgressing, "Redis Cluster not observed yet"
	case !p.cluster.OK:
		return false, sessionv1.ReasonClusterNotOK, fmt.Sprintf("A Redis server reports cluster_state:fail; %d/%d slots covered", p.cluster.SlotsCovered, render.ClusterSlots)
	case p.cluster.SlotsCovered < render.ClusterSlots:
		return false, sessionv1.ReasonSlotsUncovered, fmt.Sprintf("%d/%d slots covered", p.cluster.SlotsCovered, render.ClusterSlots)
	case s.ReadyReplicas < want:
		return false, sessionv1.ReasonStoreNotReady, fmt.Sprintf("%d/%d Redis servers ready, all %d slots covered", s.ReadyReplicas, want, render.ClusterSlots)
	}
	msg := fmt.Sprintf("%d shards, all %d slots covered, %d/%d Redis servers ready", shards, render.ClusterSlots, s.ReadyReplicas, want)
	if p.cluster.Busy {
		msg += "; moving slots"
	}
	return true, sessionv1.ReasonReady, msg
}
