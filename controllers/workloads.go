package controllers

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/render"
)

// Bring your own app: the operator wires a user's Deployment or StatefulSet (an app with
// a workloadRef) without owning it. It applies only the wiring, with server-side apply
// under its own field manager, so the user's manager (Helm, kubectl, GitOps) keeps every
// other field and neither undoes the other. It never creates, adopts or deletes the
// workload; dropping the app, or deleting the SessionCluster, applies an empty request
// under the same manager, which removes exactly the fields it had added.

// FinalizerUnwire holds a SessionCluster that wires workloads until their wiring is
// removed. Without it a deleted SessionCluster would leave its users' workloads pointing
// at a deleted store and auth Secret: their next pods would not start.
const FinalizerUnwire = "session.sessionops.dev/unwire"

// wiredState is what one pass learned about an app's wired workload.
type wiredState struct {
	workload string // Kind/name
	found    bool
	message  string
	userSet  []string
	replicas int32
	ready    int32
}

// wiredKinds are the kinds a workloadRef may name.
var wiredKinds = []struct {
	kind sessionv1.WorkloadKind
	obj  func() client.Object
	list func() client.ObjectList
}{
	{sessionv1.WorkloadDeployment, func() client.Object { return &appsv1.Deployment{} }, func() client.ObjectList { return &appsv1.DeploymentList{} }},
	{sessionv1.WorkloadStatefulSet, func() client.Object { return &appsv1.StatefulSet{} }, func() client.ObjectList { return &appsv1.StatefulSetList{} }},
}

func newWorkload(kind sessionv1.WorkloadKind) client.Object {
	for _, k := range wiredKinds {
		if k.kind == kind {
			return k.obj()
		}
	}
	return &appsv1.Deployment{}
}

// wiredCacheOptions cache only the users' workloads the operator wires, by the label its
// apply adds, and keep their managedFields: they tell whose each wired variable is.
func wiredCacheOptions(mgr ctrl.Manager, namespaces []string) cache.Options {
	sel := labels.NewSelector()
	if req, err := labels.NewRequirement(render.LabelWiredTo, "exists", nil); err == nil {
		sel = sel.Add(*req)
	}
	o := cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), DefaultLabelSelector: sel}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

// watchWired adds the wired workloads' cache to the manager and watches it: a change to a
// wired workload (a helm upgrade, an edit, a deletion) wakes its SessionCluster.
func (r *SessionClusterReconciler) watchWired(mgr ctrl.Manager, b *builder.Builder) (*builder.Builder, error) {
	c, err := cache.New(mgr.GetConfig(), wiredCacheOptions(mgr, r.Namespaces))
	if err != nil {
		return nil, fmt.Errorf("making the wired workloads' cache: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return nil, err
	}
	r.wired = c
	toCluster := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		name := obj.GetLabels()[render.LabelWiredTo]
		if name == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}}}
	})
	for _, k := range wiredKinds {
		b = b.WatchesRawSource(source.Kind(c, k.obj(), toCluster))
	}
	return b, nil
}

// validateSpec refuses, before anything is read or written, what the CRD's rules cannot
// afford to check (an app image inside the template's containers).
func (r *SessionClusterReconciler) validateSpec(_ context.Context, p *pass) error {
	if err := render.Validate(&p.spec); err != nil {
		p.problem = &problem{sessionv1.ReasonInvalidSpec, err.Error()}
	}
	return nil
}

// wireWorkloads wires every workload the spec names and unwires those it no longer does.
func (r *SessionClusterReconciler) wireWorkloads(ctx context.Context, p *pass) error {
	if p.problem != nil || p.desired == nil {
		return nil
	}
	p.wired = map[string]*wiredState{}
	if len(p.desired.Wired) > 0 && !controllerutil.ContainsFinalizer(p.sc, FinalizerUnwire) {
		if err := r.addFinalizer(ctx, p.sc); err != nil {
			return err
		}
	}
	wanted := map[string]bool{}
	for _, w := range p.desired.Wired {
		wanted[string(w.Kind)+"/"+w.Name] = true
		st, err := r.wire(ctx, p, w)
		if err != nil {
			return fmt.Errorf("wiring %s/%s of app %s: %w", w.Kind, w.Name, w.App, err)
		}
		p.wired[w.App] = st
		if !st.found {
			p.waitingForWorkload = true
		}
	}
	if err := r.unwireAll(ctx, p.sc, func(kind, name string) bool { return !wanted[kind+"/"+name] }); err != nil {
		return err
	}
	if len(p.desired.Wired) == 0 && controllerutil.ContainsFinalizer(p.sc, FinalizerUnwire) {
		// Nothing wired any more: deleting the SessionCluster need not wait for the operator.
		return r.removeFinalizer(ctx, p.sc)
	}
	return nil
}

// wire applies w's wiring when the workload lacks it. A workload that does not exist is
// reported, never created.
func (r *SessionClusterReconciler) wire(ctx context.Context, p *pass, w render.WiredWorkload) (*wiredState, error) {
	st := &wiredState{workload: string(w.Kind) + "/" + w.Name}
	live, err := r.getWired(ctx, p.sc.Namespace, w.Kind, w.Name)
	if err != nil {
		return nil, err
	}
	if live == nil {
		st.message = fmt.Sprintf("%s %s not found in namespace %s", w.Kind, w.Name, p.sc.Namespace)
		return st, nil
	}
	st.found = true
	tmpl, replicas, ready := workloadParts(live)
	st.replicas, st.ready = replicas, ready
	if other := live.GetLabels()[render.LabelWiredTo]; other != "" && other != p.sc.Name {
		st.message = fmt.Sprintf("%s %s is wired by SessionCluster %s; one workload is wired by one SessionCluster", w.Kind, w.Name, other)
		return st, nil
	}
	if metav1.GetControllerOf(live) != nil && metav1.IsControlledBy(live, p.sc) {
		st.message = fmt.Sprintf("%s %s is the operator's own; a workloadRef names the user's workload", w.Kind, w.Name)
		return st, nil
	}
	foreign := foreignFieldSets(live.GetManagedFields())
	var containers []render.LiveContainer
	for _, c := range tmpl.Spec.Containers {
		containers = append(containers, render.LiveContainer{
			Name: c.Name, Env: c.Env,
			SetByOthers: func(env string) bool { return envSetBy(foreign, c.Name, env) },
		})
	}
	res, err := render.WiringApply(w, p.sc.Namespace, containers)
	if err != nil {
		return nil, err
	}
	st.userSet = res.UserSetEnv
	if len(res.MissingContainers) > 0 {
		st.message = fmt.Sprintf("%s %s has no container %s", w.Kind, w.Name, strings.Join(res.MissingContainers, ", "))
	}
	render.MarkWired(res.Apply, p.sc.Name)
	if wiringPresent(res.Apply, live, tmpl) {
		return st, nil
	}
	// The stored version as a precondition: the request never creates a workload that
	// was deleted meanwhile, and never acts on a stale read.
	res.Apply.SetResourceVersion(live.GetResourceVersion())
	err = r.Apply(ctx, client.ApplyConfigurationFromUnstructured(res.Apply), client.FieldOwner(apply.FieldOwner), client.ForceOwnership)
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		p.requeueSoon = true
		return st, nil
	case err != nil:
		return nil, err
	}
	log.FromContext(ctx).Info("wired workload", "workload", st.workload, "app", w.App, "userSetEnv", st.userSet)
	return st, nil
}

// unwireAll removes the wiring from the workloads the SessionCluster wires for which drop
// is true.
func (r *SessionClusterReconciler) unwireAll(ctx context.Context, sc *sessionv1.SessionCluster, drop func(kind, name string) bool) error {
	if r.wired == nil {
		return nil
	}
	for _, k := range wiredKinds {
		list := k.list()
		if err := r.wired.List(ctx, list, client.InNamespace(sc.Namespace), client.MatchingLabels{render.LabelWiredTo: sc.Name}); err != nil {
			return fmt.Errorf("listing wired %ss: %w", k.kind, err)
		}
		items, err := itemsOf(list)
		if err != nil {
			return err
		}
		for _, obj := range items {
			if !drop(string(k.kind), obj.GetName()) {
				continue
			}
			u := render.Unwiring(k.kind, sc.Namespace, obj.GetName())
			u.SetResourceVersion(obj.GetResourceVersion())
			err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(apply.FieldOwner))
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("unwiring %s %s: %w", k.kind, obj.GetName(), err)
			}
			log.FromContext(ctx).Info("unwired workload", "workload", string(k.kind)+"/"+obj.GetName())
		}
	}
	return nil
}

// finalize runs while a SessionCluster is being deleted: its children go with the
// garbage collector, the users' workloads stay and lose only their wiring.
func (r *SessionClusterReconciler) finalize(ctx context.Context, sc *sessionv1.SessionCluster) error {
	if !controllerutil.ContainsFinalizer(sc, FinalizerUnwire) {
		return nil
	}
	if err := r.unwireAll(ctx, sc, func(string, string) bool { return true }); err != nil {
		return err
	}
	return r.removeFinalizer(ctx, sc)
}

func (r *SessionClusterReconciler) removeFinalizer(ctx context.Context, sc *sessionv1.SessionCluster) error {
	base := sc.DeepCopy()
	controllerutil.RemoveFinalizer(sc, FinalizerUnwire)
	if err := r.Patch(ctx, sc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer %s: %w", FinalizerUnwire, err)
	}
	return nil
}

func (r *SessionClusterReconciler) addFinalizer(ctx context.Context, sc *sessionv1.SessionCluster) error {
	base := sc.DeepCopy()
	controllerutil.AddFinalizer(sc, FinalizerUnwire)
	if err := r.Patch(ctx, sc, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer %s: %w", FinalizerUnwire, err)
	}
	return nil
}

// getWired reads a workload from the wired cache, else (not wired yet) from the
// apiserver; nil when it does not exist.
func (r *SessionClusterReconciler) getWired(ctx context.Context, ns string, kind sessionv1.WorkloadKind, name string) (client.Object, error) {
	key := client.ObjectKey{Namespace: ns, Name: name}
	obj := newWorkload(kind)
	var err error = apierrors.NewNotFound(appsv1.Resource(strings.ToLower(string(kind))+"s"), name)
	if r.wired != nil {
		err = r.wired.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	return obj, nil
}

// workloadParts are a workload's pod template, desired and ready replicas.
func workloadParts(obj client.Object) (*corev1.PodTemplateSpec, int32, int32) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		ready := w.Status.ReadyReplicas
		if w.Status.ObservedGeneration < w.Generation {
			ready = min(ready, w.Status.UpdatedReplicas)
		}
		return &w.Spec.Template, ptr.Deref(w.Spec.Replicas, 1), ready
	case *appsv1.StatefulSet:
		ready := w.Status.ReadyReplicas
		if w.Status.ObservedGeneration < w.Generation {
			ready = min(ready, w.Status.UpdatedReplicas)
		}
		return &w.Spec.Template, ptr.Deref(w.Spec.Replicas, 1), ready
	}
	return &corev1.PodTemplateSpec{}, 0, 0
}

func itemsOf(list client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := list.(type) {
	case *appsv1.DeploymentList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *appsv1.StatefulSetList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected list %T", list)
	}
	return out, nil
}

// foreignFieldSets are the spec fields each other field manager owns.
func foreignFieldSets(entries []metav1.ManagedFieldsEntry) []*fieldpath.Set {
	var out []*fieldpath.Set
	for _, e := range entries {
		if e.Manager == apply.FieldOwner || e.Subresource != "" || e.FieldsV1 == nil {
			continue
		}
		s := &fieldpath.Set{}
		if err := s.FromJSON(bytes.NewReader(e.FieldsV1.Raw)); err != nil {
			continue
		}
		out = append(out, s)
	}
	return out
}

// envSetBy reports whether one of sets owns the variable env of container c.
func envSetBy(sets []*fieldpath.Set, c, env string) bool {
	path := []fieldpath.PathElement{
		field("spec"), field("template"), field("spec"), field("containers"),
		{Key: fieldpath.KeyByFields("name", c)}, field("env"),
	}
	elem := fieldpath.PathElement{Key: fieldpath.KeyByFields("name", env)}
	for _, s := range sets {
		for _, pe := range path {
			s = s.WithPrefix(pe)
		}
		if s.Has(fieldpath.Path{elem}) || !s.WithPrefix(elem).Empty() {
			return true
		}
	}
	return false
}

func field(name string) fieldpath.PathElement { return fieldpath.PathElement{FieldName: &name} }

// wiringPresent reports whether the workload already carries everything the apply
// request sets, with the request's hash: then applying it would change nothing, and the
// pass writes nothing.
func wiringPresent(u *unstructured.Unstructured, live client.Object, tmpl *corev1.PodTemplateSpec) bool {
	if live.GetAnnotations()[render.AnnotationSpecHash] != u.GetAnnotations()[render.AnnotationSpecHash] ||
		live.GetLabels()[render.LabelWiredTo] != u.GetLabels()[render.LabelWiredTo] {
		return false
	}
	want := struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &want); err != nil {
		return false
	}
	w := want.Spec.Template
	if !equality.Semantic.DeepDerivative(w.Labels, subset(tmpl.Labels, w.Labels)) ||
		!equality.Semantic.DeepDerivative(w.Annotations, subset(tmpl.Annotations, w.Annotations)) {
		return false
	}
	for _, v := range w.Spec.Volumes {
		i := slices.IndexFunc(tmpl.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name })
		if i < 0 || !equality.Semantic.DeepDerivative(v, tmpl.Spec.Volumes[i]) {
			return false
		}
	}
	for _, c := range w.Spec.Containers {
		i := slices.IndexFunc(tmpl.Spec.Containers, func(x corev1.Container) bool { return x.Name == c.Name })
		if i < 0 {
			return false
		}
		have := tmpl.Spec.Containers[i]
		for _, e := range c.Env {
			j := slices.IndexFunc(have.Env, func(x corev1.EnvVar) bool { return x.Name == e.Name })
			if j < 0 || !equality.Semantic.DeepDerivative(e, have.Env[j]) {
				return false
			}
		}
		for _, m := range c.VolumeMounts {
			j := slices.IndexFunc(have.VolumeMounts, func(x corev1.VolumeMount) bool { return x.MountPath == m.MountPath })
			if j < 0 || !equality.Semantic.DeepDerivative(m, have.VolumeMounts[j]) {
				return false
			}
		}
	}
	return true
}

func subset(have, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := have[k]; ok {
			out[k] = v
		}
	}
	return out
}

// wiredAppStatus fills an app's status from its wired workload.
func wiredAppStatus(p *pass, a *sessionv1.AppStatus, app *sessionv1.AppSpec) {
	a.Workload = string(app.WorkloadRef.Kind) + "/" + app.WorkloadRef.Name
	st := p.wired[app.Name]
	if st == nil {
		return
	}
	a.Replicas, a.ReadyReplicas = st.replicas, st.ready
	a.Message = st.message
	a.UserSetEnv = st.userSet
}

// wiringTrouble is, for the AppsReady condition, every wired app whose workload is not
// wired, and why.
func wiringTrouble(apps []sessionv1.AppStatus) string {
	var out []string
	for _, a := range apps {
		if a.Message != "" {
			out = append(out, a.Name+": "+a.Message)
		}
	}
	return strings.Join(out, "; ")
}
