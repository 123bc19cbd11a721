package render

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Bring your own app: what the operator adds to an app's pods, whether it creates the
// Deployment (appDeployment) or only wires the user's workload (WiringApply). Both take
// it from appWiring, so a wired workload receives exactly what a created app does.

const (
	// BindingVolume is the name of the Service Binding projection volume in app pods.
	BindingVolume = "session-binding"
	// DefaultBindingRoot is SERVICE_BINDING_ROOT when the container sets none itself.
	DefaultBindingRoot = "/bindings"
	// EnvBindingRoot is the Service Binding specification's variable.
	EnvBindingRoot = "SERVICE_BINDING_ROOT"
	// LabelWiredTo on a user's workload names the SessionCluster wiring it. The operator's
	// apply adds it, and the operator caches user workloads by it alone.
	LabelWiredTo = "session.sessionops.dev/wired-to"
)

// Wiring is what the operator adds to an app's pod template.
type Wiring struct {
	// Env is the wiring contract, in order (later entries may refer to earlier ones).
	Env []corev1.EnvVar
	// Volumes and Mounts project the Service Binding Secret, with the app's own user
	// name and password, at $SERVICE_BINDING_ROOT/<cluster>-session. Empty without a store.
	Volumes []corev1.Volume
	Mounts  []corev1.VolumeMount
	// Labels and Annotations go on the pod template: the labels the Services and the
	// store's NetworkPolicy select on, the hashes that roll the pods.
	Labels      map[string]string
	Annotations map[string]string
}

// appWiring is the wiring of app's containers. root is the container's own
// SERVICE_BINDING_ROOT ("" when it sets none: the operator sets DefaultBindingRoot).
func (b *builder) appWiring(app *sessionv1.AppSpec, root string) Wiring {
	w := Wiring{Env: b.wiringEnv(app), Labels: PodSelector(b.sc, app), Annotations: b.appPodAnnotations(app)}
	if !b.spec.HasStore() {
		return w
	}
	if root == "" {
		root = DefaultBindingRoot
		w.Env = append(w.Env, corev1.EnvVar{Name: EnvBindingRoot, Value: root})
	}
	w.Volumes = []corev1.Volume{b.bindingVolume(app.Name)}
	w.Mounts = []corev1.VolumeMount{{Name: BindingVolume, MountPath: root + "/" + b.names.Binding(), ReadOnly: true}}
	return w
}

// bindingVolume projects the binding Secret's coordinates with the app's own credentials
// (the binding Secret itself carries the first app's), as the Service Binding
// specification lays a binding out: one file per key.
func (b *builder) bindingVolume(app string) corev1.Volume {
	keys := []string{"type", "provider", "host", "port", "sentinel.master", "sentinel.nodes"}
	if b.spec.Sharded() {
		keys = clusterBindingKeys
	}
	coords := make([]corev1.KeyToPath, len(keys))
	for i, k := range keys {
		coords[i] = corev1.KeyToPath{Key: k, Path: k}
	}
	user, pw := b.appUsernameRef(app), b.appPasswordRef(app)
	sources := []corev1.VolumeProjection{
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: b.names.Binding()}, Items: coords}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: user.LocalObjectReference, Items: []corev1.KeyToPath{{Key: user.Key, Path: "username"}}}},
	}
	if pw.Name == user.Name {
		sources[1].Secret.Items = append(sources[1].Secret.Items, corev1.KeyToPath{Key: pw.Key, Path: "password"})
	} else {
		sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: pw.LocalObjectReference, Items: []corev1.KeyToPath{{Key: pw.Key, Path: "password"}},
		}})
	}
	return corev1.Volume{Name: BindingVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		// Readable by whatever user the app runs as; the pod is the boundary.
		DefaultMode: int32Ptr(0o444),
		Sources:     sources,
	}}}
}

// PodSelector selects an app's pods. A wired workload's pods carry only the operator's
// own session.sessionops.dev/ labels: its app.kubernetes.io/ labels are its chart's, and
// changing them could break its selector.
func PodSelector(sc *sessionv1.SessionCluster, app *sessionv1.AppSpec) map[string]string {
	if app.WorkloadRef == nil {
		return AppSelector(sc, app.Name)
	}
	return map[string]string{LabelClient: sc.Name, LabelApp: app.Name}
}

// bindingRoot is the literal SERVICE_BINDING_ROOT an env list sets, or "".
func bindingRoot(env []corev1.EnvVar) string {
	for _, e := range env {
		if e.Name == EnvBindingRoot && e.ValueFrom == nil {
			return e.Value
		}
	}
	return ""
}

// WiredWorkload is a user's workload the operator wires but does not own.
type WiredWorkload struct {
	App  string
	Kind sessionv1.WorkloadKind
	Name string
	// Containers to wire; empty: every container.
	Containers []string
	// wiring builds the wiring once the container's own SERVICE_BINDING_ROOT is known.
	wiring func(root string) Wiring
}

// APIVersion of both kinds a WiredWorkload may be.
const workloadAPIVersion = "apps/v1"

// wiredWorkloads lists the apps that name a workload of their own.
func (b *builder) wiredWorkloads() []WiredWorkload {
	var out []WiredWorkload
	for i := range b.spec.Apps {
		app := &b.spec.Apps[i]
		ref := app.WorkloadRef
		if ref == nil {
			continue
		}
		out = append(out, WiredWorkload{
			App: app.Name, Kind: ref.Kind, Name: ref.Name, Containers: slices.Clone(ref.Containers),
			wiring: func(root string) Wiring { return b.appWiring(app, root) },
		})
	}
	return out
}

// LiveContainer is what wiring needs to know of one of the workload's containers.
type LiveContainer struct {
	Name string
	// Env is the container's env as stored.
	Env []corev1.EnvVar
	// SetByOthers reports whether a variable is set by another field manager than the
	// operator (the user's chart, kubectl): its value then wins.
	SetByOthers func(name string) bool
}

// WiringResult is the server-side apply request that wires a workload, and what the
// user's workload kept for itself.
type WiringResult struct {
	Apply *unstructured.Unstructured
	// UserSetEnv are the wired variables the workload sets itself, sorted.
	UserSetEnv []string
	// MissingContainers are containers the app names that the workload does not have.
	MissingContainers []string
}

// WiringApply is the apply request that adds w's wiring to the workload whose template
// holds containers: only the wiring fields, so the operator's field manager owns nothing
// else, and the workload's own values of wired variables are left out (they win).
// Applying it again with less removes what was dropped; Unwiring removes all of it.
func WiringApply(w WiredWorkload, namespace string, containers []LiveContainer) (*WiringResult, error) {
	res := &WiringResult{}
	byName := map[string]bool{}
	for _, c := range containers {
		byName[c.Name] = true
	}
	for _, n := range w.Containers {
		if !byName[n] {
			res.MissingContainers = append(res.MissingContainers, n)
		}
	}
	var applied []any
	var volumes []corev1.Volume
	var annotations, labels map[string]string
	userSet := map[string]bool{}
	for _, c := range containers {
		if len(w.Containers) > 0 && !slices.Contains(w.Containers, c.Name) {
			continue
		}
		root := ""
		if c.SetByOthers != nil && c.SetByOthers(EnvBindingRoot) {
			root = bindingRoot(c.Env)
		}
		wiring := w.wiring(root)
		volumes, annotations, labels = wiring.Volumes, wiring.Annotations, wiring.Labels
		if root != "" && len(wiring.Volumes) > 0 {
			userSet[EnvBindingRoot] = true // the binding is mounted under the container's own root
		}
		var env []corev1.EnvVar
		for _, e := range wiring.Env {
			if c.SetByOthers != nil && c.SetByOthers(e.Name) {
				userSet[e.Name] = true
				continue
			}
			env = append(env, e)
		}
		ctr := corev1.Container{Name: c.Name, Env: env, VolumeMounts: wiring.Mounts}
		m, err := toMap(&ctr)
		if err != nil {
			return nil, err
		}
		// Only what the wiring sets: no empty resources, no image.
		applied = append(applied, pick(m, "name", "env", "volumeMounts"))
	}
	for n := range userSet {
		res.UserSetEnv = append(res.UserSetEnv, n)
	}
	slices.Sort(res.UserSetEnv)

	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(workloadAPIVersion)
	u.SetKind(string(w.Kind))
	u.SetName(w.Name)
	u.SetNamespace(namespace)
	if applied == nil {
		// Nothing to wire (no container matched): keep only the mark, so the workload
		// stays watched and the status can say why.
		res.Apply = u
		return res, nil
	}
	podSpec := map[string]any{"containers": applied}
	if len(volumes) > 0 {
		var vols []any
		for _, v := range volumes {
			m, err := toMap(&v)
			if err != nil {
				return nil, err
			}
			vols = append(vols, m)
		}
		podSpec["volumes"] = vols
	}
	tmplMeta := map[string]any{"labels": stringMap(labels), "annotations": stringMap(annotations)}
	u.Object["spec"] = map[string]any{"template": map[string]any{"metadata": tmplMeta, "spec": podSpec}}
	res.Apply = u
	return res, nil
}

// MarkWired adds the label that names the SessionCluster wiring the workload, and the
// hash of the request, so an unchanged wiring is recognised without comparing it field
// by field.
func MarkWired(u *unstructured.Unstructured, cluster string) {
	u.SetLabels(map[string]string{LabelWiredTo: cluster})
	u.SetAnnotations(map[string]string{AnnotationSpecHash: Hash(u.Object)})
}

// Unwiring is the apply request that removes every field the operator's field manager
// owns on a workload: the same manager applying an object that sets nothing.
func Unwiring(kind sessionv1.WorkloadKind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(workloadAPIVersion)
	u.SetKind(string(kind))
	u.SetName(name)
	u.SetNamespace(namespace)
	return u
}

func toMap(v any) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		return nil, fmt.Errorf("encoding wiring: %w", err)
	}
	return m, nil
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		if v, ok := m[k]; ok && v != nil {
			out[k] = v
		}
	}
	return out
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Validate refuses a spec that passed the CRD's validation but cannot be rendered.
func Validate(spec *sessionv1.SessionClusterSpec) error {
	for i := range spec.Apps {
		if app := &spec.Apps[i]; app.WorkloadRef == nil {
			if err := appImageSet(app); err != nil {
				return err
			}
		}
	}
	return nil
}

// appImageSet refuses a created app without an image, which the CRD's validation cannot
// see inside the template's containers.
func appImageSet(app *sessionv1.AppSpec) error {
	if app.Image != "" {
		return nil
	}
	if t := app.Template; t != nil && t.Spec != nil {
		for _, c := range t.Spec.Containers {
			if c.Name == AppContainer && c.Image != "" {
				return nil
			}
		}
	}
	return &SpecError{Message: fmt.Sprintf("spec.apps[%s].image is empty and spec.apps[%s].template has no container named %s with an image", app.Name, app.Name, AppContainer)}
}

// SpecError is a spec that passed the CRD's validation but cannot be rendered: the user
// must change it (the reconciler reports it as InvalidSpec, not as a failure to retry).
type SpecError struct{ Message string }

func (e *SpecError) Error() string { return e.Message }
