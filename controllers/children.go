package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/render"
)

// render computes the desired children.
func (r *SessionClusterReconciler) render(_ context.Context, p *pass) error {
	d, err := render.Render(p.sc, r.Render, p.inputs)
	var bad *render.SpecError
	if errors.As(err, &bad) {
		p.problem = &problem{sessionv1.ReasonInvalidSpec, bad.Error()}
		return nil
	}
	if err != nil {
		return err
	}
	p.desired = d
	p.routingBlocked = strings.Join(d.Blocked, "; ")
	if p.routingBlocked == "" {
		p.url = render.URL(&p.spec)
	}
	return nil
}

// applyConcurrency bounds the requests one pass has in flight.
const applyConcurrency = 16

// applyChildren first checks that no child name is taken by someone else, then writes
// every child that differs from what it should be. A conflict stops the pass before the
// first write that would run or route anything, and takes back what the check created,
// so the operator never leaves half a stack beside a stranger's object. Independent
// children are written in parallel: what others refer to (Secrets, configuration,
// Services, accounts) in a first wave, the workloads and policies after.
func (r *SessionClusterReconciler) applyChildren(ctx context.Context, p *pass) error {
	if p.problem != nil {
		return nil
	}
	objs := p.desired.Objects
	current := make([]client.Object, len(objs))
	claimed := make([]*apply.Claimed, len(objs))
	conflicts := make([]error, len(objs))
	done := make([]bool, len(objs))
	err := inParallel(ctx, all(len(objs)), func(ctx context.Context, i int) error {
		if w, ok := p.written[describe(r.Client, objs[i])]; ok && w == apply.Intent(objs[i]) {
			done[i] = true // written as it should be earlier in this pass
			return nil
		}
		cur, claim, err := r.checkChild(ctx, p, objs[i])
		if apply.IsConflict(err) {
			conflicts[i] = err
			return nil
		}
		if err != nil {
			return fmt.Errorf("checking %s: %w", describe(r.Client, objs[i]), err)
		}
		current[i], claimed[i] = cur, claim
		return nil
	})
	key := client.ObjectKeyFromObject(p.sc)
	for _, c := range conflicts {
		if c != nil {
			r.conflicted.Store(key, true)
			p.problem = &problem{sessionv1.ReasonNameConflict, c.Error() + "; rename or delete it, the operator will not adopt it"}
			return errors.Join(err, r.unclaim(ctx, append(claimed, p.claimed...)))
		}
	}
	r.conflicted.Delete(key)
	if err != nil {
		return err
	}
	logger := log.FromContext(ctx)
	var soon atomic.Bool
	for _, wave := range waves(objs) {
		err := inParallel(ctx, wave, func(ctx context.Context, i int) error {
			obj, cur := objs[i], current[i]
			if done[i] {
				return nil
			}
			if claimed[i] != nil {
				logger.V(1).Info("wrote child", "child", describe(r.Client, obj), "outcome", apply.Created)
				return nil
			}
			if cur != nil && !cur.GetDeletionTimestamp().IsZero() {
				// Still going (a replaced StatefulSet waiting for the garbage collector
				// to release its pods): make it again once it is gone.
				soon.Store(true)
				return nil
			}
			replaced, err := r.replaceIfImmutableChanged(ctx, p, obj, cur)
			if err != nil {
				return err
			}
			if replaced {
				soon.Store(true)
				return nil
			}
			outcome, err := r.applier().ApplyOver(ctx, obj, cur)
			if err != nil {
				return fmt.Errorf("applying %s: %w", describe(r.Client, obj), err)
			}
			if outcome != apply.Unchanged {
				logger.V(1).Info("wrote child", "child", describe(r.Client, obj), "outcome", outcome)
			}
			return nil
		})
		if soon.Load() {
			p.requeueSoon = true
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkChild finds the stored child named like desired and makes sure it is this
// SessionCluster's. The cache answers for the operator's own objects. A name the cache
// does not hold may still be taken by a stranger's unlabelled object: a child that runs
// or routes nothing on its own is then claimed (created only if the name is free, one
// request), any other is read from the apiserver first.
func (r *SessionClusterReconciler) checkChild(ctx context.Context, p *pass, desired client.Object) (client.Object, *apply.Claimed, error) {
	a := r.applier()
	cur, known, err := a.Cached(ctx, p.sc, desired)
	if known || err != nil {
		return cur, nil, err
	}
	if claimable(desired) && !r.conflictStands(p.sc) {
		claim, err := a.Claim(ctx, desired)
		if err != nil || claim != nil {
			return nil, claim, err
		}
	}
	cur, err = a.Check(ctx, p.sc, desired)
	return cur, nil, err
}

// claimable are the kinds created ahead of the conflict check's verdict: none runs or
// routes anything, or depends on another child, so one taken back a moment later did
// nothing meanwhile. Workloads, Ingresses, routes and RoleBindings (which need their
// Role) are created only once every name is known to be free.
func claimable(obj client.Object) bool {
	switch obj.(type) {
	case *corev1.Secret, *corev1.ConfigMap, *corev1.Service, *corev1.ServiceAccount, *rbacv1.Role,
		*policyv1.PodDisruptionBudget, *networkingv1.NetworkPolicy:
		return true
	}
	return false
}

// conflictStands reports whether the last pass found a stranger's object in the way:
// while it stands the check reads before it writes, so a pass that finds it again
// creates and takes back nothing.
func (r *SessionClusterReconciler) conflictStands(sc *sessionv1.SessionCluster) bool {
	if _, ok := r.conflicted.Load(client.ObjectKeyFromObject(sc)); ok {
		return true
	}
	c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionDegraded)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == sessionv1.ReasonNameConflict
}

// unclaim deletes the children this pass's check created, when a conflict stops it.
func (r *SessionClusterReconciler) unclaim(ctx context.Context, claimed []*apply.Claimed) error {
	var errs []error
	for _, c := range claimed {
		if c != nil {
			errs = append(errs, r.applier().Unclaim(ctx, c))
		}
	}
	return errors.Join(errs...)
}

// waves splits children into what others refer to and what refers to them. A RoleBinding
// waits for its Role: the apiserver checks that the binder holds what the Role grants, and
// cannot while the Role does not exist.
func waves(objs []client.Object) [][]int {
	var first, second []int
	for i, o := range objs {
		switch o.(type) {
		case *corev1.Secret, *corev1.ConfigMap, *corev1.Service, *corev1.ServiceAccount, *rbacv1.Role:
			first = append(first, i)
		default:
			second = append(second, i)
		}
	}
	return [][]int{first, second}
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// inParallel runs fn for each index, at most applyConcurrency at once. One failure does
// not cancel the others: every child that can be written is, and the errors are joined.
func inParallel(ctx context.Context, idx []int, fn func(context.Context, int) error) error {
	var g errgroup.Group
	g.SetLimit(applyConcurrency)
	errs := make([]error, len(idx))
	for j, i := range idx {
		g.Go(func() error {
			errs[j] = fn(ctx, i)
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// pruneChildren deletes children the spec no longer asks for: an orphan left behind by a
// mode change would keep serving, or keep costing, with nobody watching it.
func (r *SessionClusterReconciler) pruneChildren(ctx context.Context, p *pass) error {
	if p.problem != nil || p.desired == nil {
		return nil
	}
	wanted := map[string]bool{}
	for _, obj := range p.desired.Objects {
		wanted[describe(r.Client, obj)] = true
	}
	for _, k := range r.kinds() {
		list := k.list.DeepCopyObject().(client.ObjectList)
		if err := r.List(ctx, list, client.InNamespace(p.sc.Namespace), client.MatchingLabels(render.InstanceSelector(p.sc))); err != nil {
			return fmt.Errorf("listing %T: %w", k.obj, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return fmt.Errorf("reading %T: %w", list, err)
		}
		for _, item := range items {
			obj, ok := item.(client.Object)
			if !ok || !metav1.IsControlledBy(obj, p.sc) || wanted[describe(r.Client, obj)] {
				continue
			}
			if err := r.prune(ctx, p, obj); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *SessionClusterReconciler) prune(ctx context.Context, p *pass, obj client.Object) error {
	what := describe(r.Client, obj)
	err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", what, err)
	}
	log.FromContext(ctx).Info("deleted child the spec no longer asks for", "child", what)
	if sts, ok := obj.(*appsv1.StatefulSet); ok && sts.Labels[render.LabelComponent] == render.ComponentStore {
		r.storeRemoved(p, sts)
	}
	return nil
}

// storeRemoved tells the user what became of the sessions on disk.
func (r *SessionClusterReconciler) storeRemoved(p *pass, sts *appsv1.StatefulSet) {
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventStoreRemoved, "Prune",
			"Store %s removed; it kept sessions in memory only", sts.Name)
		return
	}
	replicas := ptr.Deref(sts.Spec.Replicas, 1)
	claims := make([]string, 0, replicas)
	for i := range int(replicas) {
		claims = append(claims, fmt.Sprintf("%s-%s-%d", sts.Spec.VolumeClaimTemplates[0].Name, sts.Name, i))
	}
	policy := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if policy != nil && policy.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventClaimsDeleted, "Prune",
			"Store %s removed with its claims %s, as spec.store.persistence.deleteClaim asked", sts.Name, strings.Join(claims, ", "))
		return
	}
	r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventStoreRemoved, "Prune",
		"Store %s removed; its claims %s are kept with their sessions (delete them by hand when no longer needed)", sts.Name, strings.Join(claims, ", "))
}

func describe(c client.Client, obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	kind := fmt.Sprintf("%T", obj)
	if err == nil {
		kind = gvk.Kind
	}
	return kind + "/" + obj.GetName()
}
