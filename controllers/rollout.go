package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/rollout"
	"github.com/sessionops/session-operator/internal/store"
)

// StoreAdmin is what the rollout asks of a running store; *store.Admin talks to the real
// servers and Sentinels, envtest (which runs no pods) uses a fake.
type StoreAdmin interface {
	Server(ctx context.Context, addr string, t store.Target) store.Server
	Sentinels(ctx context.Context, t store.Target) store.SentinelView
	Switchover(ctx context.Context, t store.Target, primary string, candidates []string, port int, budget time.Duration) (string, error)
}

// switchoverBudget bounds one planned handover (writes are paused for at most this long).
const switchoverBudget = 20 * time.Second

// inSyncBytes is how far a replica may trail the primary and still count as in sync
// between steps; the switchover itself waits for an exact match with writes paused.
const inSyncBytes = 1 << 20

// planStore takes the next step of an operator-driven rollout of the servers (their
// StatefulSet is OnDelete): replicas first, each Ready and in sync before the next, then
// one planned switchover, then the old primary. It also gates a scale-down, so that the
// primary is never removed without a switchover first: the StatefulSet keeps its
// current size until rollout.Next allows the smaller one. It runs before the children
// are applied; a template changed by this pass is acted on once the StatefulSet
// controller has given it a revision.
func (r *SessionClusterReconciler) planStore(ctx context.Context, p *pass) error {
	if !p.spec.HasStore() || p.spec.Sharded() || p.problem != nil || r.Admin == nil {
		return nil
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	sts, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Store())
	if err != nil || sts == nil || p.inputs.Internal.Operator == "" {
		return err
	}
	sentinels, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Sentinel())
	if err != nil {
		return err
	}
	cur := ptr.Deref(sts.Spec.Replicas, 1)
	settled := sts.Status.ObservedGeneration >= sts.Generation && sts.Status.UpdateRevision != ""
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(p.sc.Namespace), client.MatchingLabels(render.Selector(p.sc, render.ComponentStore))); err != nil {
		return fmt.Errorf("listing store pods: %w", err)
	}
	if settled && cur == p.spec.Store.Replicas && allAt(pods.Items, sts.Status.UpdateRevision) {
		// Steady state: nothing to roll or scale, no need to ask the store anything.
		return nil
	}
	if !settled && cur <= p.spec.Store.Replicas {
		// The StatefulSet controller has not given the current template a revision yet
		// (a new store, say), and no scale-down needs guarding: nothing to ask the
		// Sentinels. Its status update wakes a pass (StatefulSets are owned).
		return nil
	}
	view := r.Admin.Sentinels(ctx, r.storeTarget(p, n))
	// A scale-down waits while it would remove the primary the Sentinels name; with no
	// primary known there is nothing to protect (and nothing to hand over to).
	primaryOrdinal, known := ordinalOf(render.PodFromHost(view.Primary), sts.Name)
	hold := cur > p.spec.Store.Replicas && known && primaryOrdinal >= int(p.spec.Store.Replicas)
	if !settled {
		// The StatefulSet controller has not given the current template a revision yet;
		// its status update wakes a pass (StatefulSets are owned).
		if hold {
			p.storeReplicas = ptr.To(cur)
			r.holdStoreSize(p, n)
			p.requeueSoon = true
		}
		return nil
	}
	state := r.rolloutState(ctx, p, n, sts, sentinels, view, pods.Items)
	step := rollout.Next(state)
	if hold && step.Kind != rollout.ScaleTo {
		p.storeReplicas = ptr.To(cur)
	}
	if step.Kind == rollout.ScaleTo {
		p.storeReplicas = ptr.To(int32(step.Replicas))
	}
	defer r.holdStoreSize(p, n)
	p.rollout = &sessionv1.StoreRollout{Step: sessionv1.RolloutStep(step.Kind), Message: truncate(step.String(), 512)}
	logger := log.FromContext(ctx).WithValues("step", step.Kind, "reason", step.Reason)
	switch step.Kind {
	case rollout.Done:
		p.rollout = nil
		return nil
	case rollout.Wait, rollout.ScaleTo:
		if step.Kind == rollout.ScaleTo || state.Current != state.Desired || revisionsDiffer(state) {
			p.requeueSoon = true
		} else {
			p.rollout = nil
		}
		return nil
	case rollout.DeletePod:
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.sc.Namespace, Name: step.Pod}}
		logger.Info("replacing store pod", "pod", step.Pod)
		if err := r.Delete(ctx, pod); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting store pod %s: %w", step.Pod, err)
		}
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventStorePodReplaced, "Rollout", "Replacing %s: %s", step.Pod, step.Reason)
		p.requeueSoon = true
		return nil
	case rollout.Switchover:
		hosts := map[string]string{}
		for i, h := range n.StoreHosts(int32(state.Current)) {
			hosts[n.StorePod(i)] = h
		}
		var cands []string
		for _, c := range step.Candidates {
			cands = append(cands, hosts[c])
		}
		logger.Info("planned switchover", "from", step.Pod, "candidates", step.Candidates)
		to, err := r.Admin.Switchover(ctx, r.storeTarget(p, n), hosts[step.Pod], cands, render.RedisPort, switchoverBudget)
		p.requeueSoon = true
		if errors.Is(err, store.ErrNotSafe) {
			logger.Info("switchover postponed", "why", err.Error())
			return nil
		}
		if err != nil {
			return fmt.Errorf("switching over from %s: %w", step.Pod, err)
		}
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventSwitchover, "Rollout",
			"Planned switchover from %s to %s: %s", step.Pod, render.PodFromHost(to), step.Reason)
		// The tracker would learn of the switch from +switch-master a moment later; asking
		// the Sentinels now lets this pass's observeStore move the primary Service to the
		// new primary at once, so clients are refused writes by the old one for no longer
		// than the hand-over itself.
		if _, err := r.Observer.Observe(ctx, r.storeTarget(p, n)); err != nil {
			logger.Info("asking the Sentinels after a switchover", "error", err.Error())
		}
		return nil
	}
	return nil
}

func revisionsDiffer(s rollout.State) bool {
	for _, p := range s.Pods {
		if p.Revision != s.UpdateRevision {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (r *SessionClusterReconciler) storeTarget(p *pass, n render.Names) store.Target {
	return store.Target{
		Cluster:    client.ObjectKeyFromObject(p.sc),
		MasterName: n.MasterName(),
		Sentinels:  render.HostPorts(n.SentinelHosts(p.spec.Store.Sentinel.Replicas), render.SentinelPort),
		Username:   render.UserOperator,
		Password:   p.inputs.Internal.Operator,
	}
}

// rolloutState is what rollout.Next needs: the StatefulSet's revision and sizes, each
// pod's revision, readiness and what its server reports, and the Sentinels' view.
func (r *SessionClusterReconciler) rolloutState(ctx context.Context, p *pass, n render.Names, sts, sentinels *appsv1.StatefulSet, view store.SentinelView, pods []corev1.Pod) rollout.State {
	s := rollout.State{
		UpdateRevision: sts.Status.UpdateRevision,
		Desired:        int(p.spec.Store.Replicas),
		Current:        int(ptr.Deref(sts.Spec.Replicas, 1)),
	}
	s.FailoverInProgress = view.FailoverInProgress
	s.Primary = render.PodFromHost(view.Primary)
	s.SentinelsReady = sentinels != nil && sentinels.Status.ReadyReplicas >= p.spec.Store.Sentinel.Replicas &&
		view.Reachable == int(p.spec.Store.Sentinel.Replicas)

	type probe struct {
		pod    rollout.Pod
		host   string
		server store.Server
	}
	probes := make([]probe, 0, len(pods))
	for i := range pods {
		pod := &pods[i]
		ord, ok := ordinalOf(pod.Name, sts.Name)
		if !ok {
			continue
		}
		probes = append(probes, probe{
			pod: rollout.Pod{
				Name: pod.Name, Ordinal: ord, Revision: pod.Labels[appsv1.ControllerRevisionHashLabelKey],
				Ready: podReady(pod), Terminating: pod.DeletionTimestamp != nil,
			},
			host: pod.Name + "." + n.StoreDomain(),
		})
	}
	var wg sync.WaitGroup
	for i := range probes {
		wg.Add(1)
		go func(pr *probe) {
			defer wg.Done()
			pr.server = r.Admin.Server(ctx, fmt.Sprintf("%s:%d", pr.host, render.RedisPort), r.storeTarget(p, n))
		}(&probes[i])
	}
	wg.Wait()
	var primary store.Server
	for _, pr := range probes {
		if pr.pod.Name == s.Primary {
			primary = pr.server
		}
	}
	for _, pr := range probes {
		pr.pod.Role = pr.server.Role
		if off, ok := primary.Replicas[pr.host]; ok && pr.server.LinkUp {
			pr.pod.InSync = primary.Offset-off < inSyncBytes
		}
		s.Pods = append(s.Pods, pr.pod)
	}
	return s
}

// allAt reports whether every pod was made from revision rev.
func allAt(pods []corev1.Pod, rev string) bool {
	for i := range pods {
		if pods[i].Labels[appsv1.ControllerRevisionHashLabelKey] != rev {
			return false
		}
	}
	return true
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// holdStoreSize writes the size planStore chose into the desired StatefulSet.
func (r *SessionClusterReconciler) holdStoreSize(p *pass, n render.Names) {
	if p.storeReplicas == nil || p.desired == nil {
		return
	}
	for _, o := range p.desired.Objects {
		if sts, ok := o.(*appsv1.StatefulSet); ok && sts.Name == n.Store() {
			sts.Spec.Replicas = ptr.To(*p.storeReplicas)
		}
	}
}

// ordinalOf is the ordinal of a pod of the StatefulSet named set.
func ordinalOf(pod, set string) (int, bool) {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil
}
