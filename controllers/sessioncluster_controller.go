// Package controllers holds the SessionCluster reconciler.
package controllers

import (
	"context"
	"errors"
	"fmt"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/metrics"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// How often a SessionCluster with a store is looked at again without any event. Most
// changes arrive as events (workload status, Sentinel announcements through the Waker);
// these are the fallback, a little sooner while the store is not ready.
const (
	requeueStoreNotReady = 30 * time.Second
	requeueStoreReady    = 60 * time.Second
	requeueProblem       = 30 * time.Second
	requeueSoon          = 2 * time.Second
	requeueClaims        = 10 * time.Second
	// requeueTracked is the fallback for a store a Tracker observes: the tracker wakes
	// the SessionCluster whenever its Observation changes, and store pods are watched,
	// so this only bounds how long anything missed could go unnoticed.
	requeueTracked = 10 * time.Minute
)

// SessionClusterReconciler turns SessionClusters into their children and reports status.
type SessionClusterReconciler struct {
	client.Client
	// APIReader reads around the cache, for objects the label-selected cache cannot hold.
	APIReader client.Reader
	Events    events.EventRecorder
	Observer  store.Observer
	Render    render.Options
	// MaxConcurrentReconciles bounds parallel reconciles.
	MaxConcurrentReconciles int
	// GatewayAPI reports whether the Gateway API CRDs are installed; nil means they are not.
	GatewayAPI func() bool
	// GatewaySessionPersistence reports whether the installed HTTPRoute schema keeps
	// sessionPersistence; nil means it does.
	GatewaySessionPersistence func() bool
	// Admin takes the planned steps of a store rollout (replace a pod, hand the primary
	// over); nil leaves the servers' StatefulSet (OnDelete) to whoever deletes its pods.
	Admin StoreAdmin
	// Waker, when set, wakes reconciles from outside the cluster (Sentinel announcements).
	Waker *Waker
	// WatchHTTPRoutes is set when the Gateway API was installed at start, so HTTPRoutes
	// are watched like every other child.
	WatchHTTPRoutes bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Cluster builds and heals sharded stores; nil means internal/rediscluster.
	Cluster ClusterEngine
	// SyncUsers applies the store's ACL users live; nil means store.SyncUsers.
	SyncUsers func(context.Context, store.UsersTarget) (store.UsersSync, error)
	// Namespaces the manager watches; empty means all. The wired workloads' cache
	// follows them.
	Namespaces []string

	// ctrl and cache let a pass add the HTTPRoute watch when the Gateway API appears later.
	ctrl         controller.Controller
	cache        cache.Cache
	routeWatchMu sync.Mutex
	// wired caches the users' workloads the operator wires (see watchWired).
	wired client.Reader
	// verified records the cached (slimmed) workloads known to match what was applied.
	verified     *apply.Verified
	verifiedOnce sync.Once
	// conflicted holds the SessionClusters whose last check found a stranger's object in
	// the way (see conflictStands): the status says so too, but the cache may not yet.
	conflicted sync.Map
}

// delete on sessionclusters is for the chart's pre-delete hook (internal/uninstall), which runs as
// the manager's ServiceAccount.
// +kubebuilder:rbac:groups=session.sessionops.dev,resources=sessionclusters,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=session.sessionops.dev,resources=sessionclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=session.sessionops.dev,resources=sessionclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets;configmaps;services;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets;deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies;ingresses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// step is one named part of a reconcile pass. Writing steps run only while every earlier
// step succeeded (no half-written stack); observing steps run always, so one failing write
// does not blank the ready counts, the primary or the failover record in status.
type step struct {
	name    string
	run     func(context.Context, *pass) error
	observe bool
}

// Reconcile reads the SessionCluster, renders its children, writes what differs, removes
// what is no longer wanted, observes the result, and writes status once.
func (r *SessionClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sc := &sessionv1.SessionCluster{}
	if err := r.Get(ctx, req.NamespacedName, sc); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.Forget(req.Namespace, req.Name)
			r.conflicted.Delete(req.NamespacedName)
			if f, ok := r.Observer.(forgetter); ok {
				f.Forget(req.NamespacedName)
			}
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sc.DeletionTimestamp.IsZero() {
		// Children carry owner references; the garbage collector removes them. The
		// users' workloads are not children: they stay and lose their wiring.
		return ctrl.Result{}, r.finalize(ctx, sc)
	}
	p := &pass{sc: sc, spec: sc.Spec.WithDefaults(), now: r.now()}
	var errs []error
	for _, s := range []step{
		{name: "validateSpec", run: r.validateSpec},
		{name: "readInputs", run: r.readInputs},
		{name: "syncUsers", run: r.syncUsers},
		{name: "render", run: r.render},
		{name: "planStore", run: r.planStore},
		{name: "planCluster", run: r.planCluster},
		{name: "applyChildren", run: r.applyChildren},
		{name: "pruneChildren", run: r.pruneChildren},
		{name: "wireWorkloads", run: r.wireWorkloads},
		{name: "growClaims", run: r.growClaims},
		{name: "observeStore", run: r.observeStore, observe: true},
		{name: "observeApps", run: r.observeApps, observe: true},
		{name: "observeRouting", run: r.observeRouting, observe: true},
		{name: "observeRoutingStatus", run: r.observeRoutingStatus, observe: true},
	} {
		if p.failedErr != nil && !s.observe {
			continue
		}
		if err := s.run(ctx, p); err != nil {
			if p.failedErr == nil {
				p.failed, p.failedErr = s.name, err
			}
			metrics.ReconcileErrors.WithLabelValues(s.name).Inc()
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	written, err := r.writeStatus(ctx, p)
	if err != nil {
		metrics.ReconcileErrors.WithLabelValues("writeStatus").Inc()
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return ctrl.Result{}, errors.Join(errs...)
	}
	if !written {
		// Someone else changed the SessionCluster since it was read; the transitions this
		// pass saw are announced by the pass that writes them.
		return ctrl.Result{RequeueAfter: requeueSoon}, nil
	}
	return ctrl.Result{RequeueAfter: r.requeueAfter(p)}, nil
}

// writeStatus computes the status and writes it only when it changed; then, and only
// when what they describe is stored, it announces the transitions a user would act on, so
// a failed write never repeats an event or counts a failover twice. It reports whether
// the status now stored is this pass's.
func (r *SessionClusterReconciler) writeStatus(ctx context.Context, p *pass) (bool, error) {
	status, fo := computeStatus(p, r.Render.ClusterDomain)
	prev := p.sc.Status.DeepCopy()
	if !equality.Semantic.DeepEqual(status, p.sc.Status) {
		base := p.sc.DeepCopy()
		p.sc.Status = status
		// Optimistic: a pass that read a SessionCluster older than the last status
		// written (the cache lags behind a write by a moment, and a pod relabelled or an
		// Observation changed wakes the next pass at once) must not write, or announce,
		// what that status already says.
		if err := r.Status().Patch(ctx, p.sc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("writing status: %w", err)
		}
	}
	r.announce(ctx, p, prev, status, fo)
	return true, nil
}

// announce emits events and metrics for transitions only: a failover, or a newly
// degraded cluster. Steady states are in status, not in a stream of repeated events.
func (r *SessionClusterReconciler) announce(ctx context.Context, p *pass, prev *sessionv1.SessionClusterStatus, status sessionv1.SessionClusterStatus, fo *failover) {
	ns, name := p.sc.Namespace, p.sc.Name
	if fo != nil {
		metrics.Failovers.WithLabelValues(ns, name).Inc()
		if fo.duration > 0 {
			metrics.FailoverDuration.WithLabelValues(ns, name).Observe(fo.duration.Seconds())
		}
		log.FromContext(ctx).Info("store failed over", "from", fo.from, "to", fo.to, "duration", fo.duration)
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventFailover, "Failover",
			"Primary moved from %s to %s", fo.from, fo.to)
	}
	if status.Store != nil && rotationFinished(prev.Store, status.Store) {
		rot := status.Store.PasswordRotation
		took := rot.FinishedAt.Sub(rot.StartedAt.Time).Round(time.Second)
		log.FromContext(ctx).Info("store passwords rotated", "users", rot.Users, "took", took)
		r.Events.Eventf(p.sc, nil, corev1.EventTypeNormal, sessionv1.EventPasswordRotated, "RotatePassword",
			"New passwords for %s are in use and the old ones are dropped (%s)", strings.Join(rot.Users, ", "), took)
	}
	if status.Store != nil {
		metrics.StoreReplicasReady.WithLabelValues(ns, name).Set(float64(status.Store.ReadyReplicas))
		if p.observed != nil && p.observed.Keys >= 0 && p.observed.PrimaryHost != "" {
			metrics.SessionsStored.WithLabelValues(ns, name).Set(float64(p.observed.Keys))
		}
	}
	wasRouting := meta.FindStatusCondition(prev.Conditions, sessionv1.ConditionRoutingReady)
	nowRouting := meta.FindStatusCondition(status.Conditions, sessionv1.ConditionRoutingReady)
	if (nowRouting.Reason == sessionv1.ReasonGatewayAPIMissing || nowRouting.Reason == sessionv1.ReasonSessionPersistenceUnsupported) &&
		(wasRouting == nil || wasRouting.Reason != nowRouting.Reason) {
		r.Events.Eventf(p.sc, nil, corev1.EventTypeWarning, nowRouting.Reason, "Reconcile", "%s", nowRouting.Message)
	}
	was := meta.FindStatusCondition(prev.Conditions, sessionv1.ConditionDegraded)
	now := meta.FindStatusCondition(status.Conditions, sessionv1.ConditionDegraded)
	if now.Status == "True" && (was == nil || was.Status != "True" || was.Reason != now.Reason) {
		log.FromContext(ctx).Info("degraded", "reason", now.Reason, "message", now.Message)
		r.Events.Eventf(p.sc, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
	}
}

func (r *SessionClusterReconciler) requeueAfter(p *pass) time.Duration {
	switch {
	case p.requeueSoon:
		return requeueSoon
	case p.claims != nil && p.claims.Pending > 0:
		return requeueClaims
	case p.problem != nil, p.waitingForWorkload:
		return requeueProblem
	case !p.spec.HasStore():
		return 0
	case r.tracksStores():
		return requeueTracked
	case meta.IsStatusConditionTrue(p.sc.Status.Conditions, sessionv1.ConditionStoreReady):
		return requeueStoreReady
	default:
		return requeueStoreNotReady
	}
}

// tracksStores reports whether the observer keeps stores observed by itself.
func (r *SessionClusterReconciler) tracksStores() bool {
	_, ok := r.Observer.(store.Tracker)
	return ok
}

// storePodOwner maps a store pod to its SessionCluster through the instance label.
func storePodOwner(_ context.Context, obj client.Object) []reconcile.Request {
	l := obj.GetLabels()
	if l[render.LabelManagedBy] != render.ManagedBy || l[render.LabelComponent] != render.ComponentStore || l[render.LabelInstance] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: l[render.LabelInstance]}}}
}

func (r *SessionClusterReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *SessionClusterReconciler) applier() *apply.Applier {
	r.verifiedOnce.Do(func() { r.verified = apply.NewVerified() })
	return &apply.Applier{Client: r.Client, Live: r.APIReader, Verified: r.verified}
}

func (r *SessionClusterReconciler) gatewayAPIInstalled() bool {
	return r.GatewayAPI != nil && r.GatewayAPI()
}

// kinds are the child kinds this operator manages in this cluster: HTTPRoute only where
// the Gateway API is installed.
func (r *SessionClusterReconciler) kinds() []childKind {
	kinds := childKinds()
	if r.routesWatched() || r.gatewayAPIInstalled() {
		kinds = append(kinds, childKind{&gatewayv1.HTTPRoute{}, &gatewayv1.HTTPRouteList{}})
	}
	return kinds
}

// SetupWithManager watches SessionClusters and every kind of child they own, so a child
// deleted or edited by hand is put back.
func (r *SessionClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&sessionv1.SessionCluster{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.MaxConcurrentReconciles)})
	kinds := childKinds()
	if r.WatchHTTPRoutes {
		kinds = append(kinds, childKind{&gatewayv1.HTTPRoute{}, &gatewayv1.HTTPRouteList{}})
	}
	for _, k := range kinds {
		b = b.Owns(k.obj)
	}
	if r.Waker != nil {
		b = b.WatchesRawSource(r.Waker)
	}
	// Store pods: a new or changed one gets its role label at once, not at the next
	// periodic pass. The cache holds only the operator's store pods.
	b = b.Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(storePodOwner))
	b, err := r.watchWired(mgr, b)
	if err != nil {
		return err
	}
	c, err := b.Build(r)
	if err != nil {
		return err
	}
	r.ctrl, r.cache = c, mgr.GetCache()
	return r.forgetDeletedWorkloads(mgr.GetCache())
}

// forgetDeletedWorkloads drops the verified record of a StatefulSet or Deployment once it
// is deleted, so the record does not grow with churn.
func (r *SessionClusterReconciler) forgetDeletedWorkloads(c cache.Cache) error {
	r.verifiedOnce.Do(func() { r.verified = apply.NewVerified() })
	for _, obj := range []client.Object{&appsv1.StatefulSet{}, &appsv1.Deployment{}} {
		inf, err := c.GetInformer(context.Background(), obj)
		if err != nil {
			return fmt.Errorf("watching deletions of %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if m, ok := o.(metav1.Object); ok {
				r.verified.Forget(m.GetUID())
			}
		}}); err != nil {
			return fmt.Errorf("watching deletions of %T: %w", obj, err)
		}
	}
	return nil
}
