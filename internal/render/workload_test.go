package render

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

func wiredCluster(mutate ...func(*sessionv1.SessionClusterSpec)) *sessionv1.SessionCluster {
	return cluster(sessionv1.ModeStore, append([]func(*sessionv1.SessionClusterSpec){func(s *sessionv1.SessionClusterSpec) {
		s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "api", Path: "/api", WorkloadRef: &sessionv1.WorkloadReference{Name: "my-api"}})
	}}, mutate...)...)
}

func deploymentOf(t *testing.T, d *Desired, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range d.Objects {
		if dep, ok := o.(*appsv1.Deployment); ok && dep.Name == name {
			return dep
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func statefulSetOf(t *testing.T, d *Desired, name string) *appsv1.StatefulSet {
	t.Helper()
	for _, o := range d.Objects {
		if s, ok := o.(*appsv1.StatefulSet); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no StatefulSet %s", name)
	return nil
}

func containerOf(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s in %v", name, spec.Containers)
	}
	return spec.Containers[i]
}

// wiredTemplate decodes an apply request's pod template.
func wiredTemplate(t *testing.T, u *unstructured.Unstructured) corev1.PodTemplateSpec {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template
}

func envNames(env []corev1.EnvVar) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = e.Name
	}
	return out
}

// A wired workload gets the same wiring an app the operator creates gets: the same
// variables in the same order, the same binding projection and mount, its own user.
func TestWiredWorkloadGetsTheCreatedAppsWiring(t *testing.T) {
	sc := wiredCluster(func(s *sessionv1.SessionClusterSpec) {
		s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "twin", Image: "example/api:1", Path: "/twin"})
	})
	d := mustRender(t, sc)
	if len(d.Wired) != 1 || d.Wired[0].Name != "my-api" || d.Wired[0].Kind != sessionv1.WorkloadDeployment {
		t.Fatalf("wired %+v", d.Wired)
	}
	for _, o := range d.Objects {
		if o.GetName() == "my-api" || o.GetName() == "shop-api" && o.GetObjectKind().GroupVersionKind().Kind == "Deployment" {
			t.Errorf("the operator would create or own the user's workload: %T %s", o, o.GetName())
		}
	}
	res, err := WiringApply(d.Wired[0], "web", []LiveContainer{{Name: "main"}})
	if err != nil {
		t.Fatal(err)
	}
	got := wiredTemplate(t, res.Apply)
	created := deploymentOf(t, d, "shop-twin").Spec.Template
	wiredEnv, createdEnv := got.Spec.Containers[0].Env, containerOf(t, created.Spec, "app").Env
	if !slices.Equal(envNames(wiredEnv), envNames(createdEnv)) {
		t.Errorf("wired env %v, created env %v", envNames(wiredEnv), envNames(createdEnv))
	}
	for i, e := range wiredEnv {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			want := strings.Replace(createdEnv[i].ValueFrom.SecretKeyRef.Key, "twin", "api", 1)
			if e.ValueFrom.SecretKeyRef.Key != want || e.ValueFrom.SecretKeyRef.Name != "shop-store-auth" {
				t.Errorf("%s from %+v, want key %s", e.Name, e.ValueFrom.SecretKeyRef, want)
			}
		}
		if e.Value != "" && strings.Contains(e.Value, testPassword) {
			t.Errorf("%s holds the password", e.Name)
		}
	}
	if !slices.Contains(envNames(wiredEnv), "SESSION_REDIS_USERNAME") || !slices.Contains(envNames(wiredEnv), "SERVICE_BINDING_ROOT") {
		t.Errorf("wired env lacks the username or the binding root: %v", envNames(wiredEnv))
	}
	if len(got.Spec.Volumes) != 1 || got.Spec.Volumes[0].Projected == nil {
		t.Fatalf("volumes %+v", got.Spec.Volumes)
	}
	var paths []string
	for _, src := range got.Spec.Volumes[0].Projected.Sources {
		for _, it := range src.Secret.Items {
			paths = append(paths, it.Path)
			if it.Path == "username" && it.Key != "api.username" || it.Path == "password" && it.Key != "api.password" {
				t.Errorf("binding %s from %s", it.Path, it.Key)
			}
		}
	}
	slices.Sort(paths)
	if want := []string{"host", "password", "port", "provider", "sentinel.master", "sentinel.nodes", "type", "username"}; !slices.Equal(paths, want) {
		t.Errorf("binding files %v, want %v", paths, want)
	}
	if m := got.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0].MountPath != "/bindings/shop-session" || !m[0].ReadOnly {
		t.Errorf("mounts %+v", m)
	}
	if got.Labels[LabelClient] != "shop" || got.Labels[LabelApp] != "api" || len(got.Labels) != 2 {
		t.Errorf("pod labels %v: want only the operator's own keys", got.Labels)
	}
	if got.Annotations[AnnotationWiringHash] == "" || got.Annotations[AnnotationPasswordVersion] == "" {
		t.Errorf("pod annotations %v", got.Annotations)
	}
	// The created app's pods carry the same projection.
	if !slices.ContainsFunc(created.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == BindingVolume }) {
		t.Errorf("created app has no binding volume")
	}
}

// The apply request holds only wiring fields: the operator's field manager must own
// nothing else of the user's workload.
func TestWiringApplyHoldsOnlyTheWiring(t *testing.T) {
	d := mustRender(t, wiredCluster())
	res, err := WiringApply(d.Wired[0], "web", []LiveContainer{{Name: "main"}, {Name: "sidecar"}})
	if err != nil {
		t.Fatal(err)
	}
	MarkWired(res.Apply, "shop")
	u := res.Apply.Object
	if keys := mapKeys(u); !slices.Equal(keys, []string{"apiVersion", "kind", "metadata", "spec"}) {
		t.Errorf("top level %v", keys)
	}
	if keys := mapKeys(u["metadata"].(map[string]any)); !slices.Equal(keys, []string{"annotations", "labels", "name", "namespace"}) {
		t.Errorf("metadata %v", keys)
	}
	if keys := mapKeys(u["spec"].(map[string]any)); !slices.Equal(keys, []string{"template"}) {
		t.Errorf("spec %v: replicas, selector and strategy are the user's", keys)
	}
	pod := u["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if keys := mapKeys(pod); !slices.Equal(keys, []string{"containers", "volumes"}) {
		t.Errorf("pod spec %v", keys)
	}
	for _, c := range pod["containers"].([]any) {
		if keys := mapKeys(c.(map[string]any)); !slices.Equal(keys, []string{"env", "name", "volumeMounts"}) {
			t.Errorf("container %v", keys)
		}
	}
	if res.Apply.GetLabels()[LabelWiredTo] != "shop" || res.Apply.GetAnnotations()[AnnotationSpecHash] == "" {
		t.Errorf("mark: %v %v", res.Apply.GetLabels(), res.Apply.GetAnnotations())
	}
	empty := Unwiring(sessionv1.WorkloadStatefulSet, "web", "my-api")
	if keys := mapKeys(empty.Object); !slices.Equal(keys, []string{"apiVersion", "kind", "metadata"}) || empty.GetKind() != "StatefulSet" {
		t.Errorf("unwiring request %v", empty.Object)
	}
}

// A wired variable the workload sets itself is left out of the request (its value wins)
// and reported; so is its own SERVICE_BINDING_ROOT, which moves the mount.
func TestWiringLeavesTheUsersVariables(t *testing.T) {
	d := mustRender(t, wiredCluster(func(s *sessionv1.SessionClusterSpec) {
		s.Apps[1].WorkloadRef.Containers = []string{"main", "gone"}
	}))
	own := map[string]bool{"REDIS_HOST": true, "SERVICE_BINDING_ROOT": true}
	res, err := WiringApply(d.Wired[0], "web", []LiveContainer{
		{Name: "main", Env: []corev1.EnvVar{{Name: "SERVICE_BINDING_ROOT", Value: "/var/run/bindings"}}, SetByOthers: func(n string) bool { return own[n] }},
		{Name: "sidecar"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.UserSetEnv, []string{"REDIS_HOST", "SERVICE_BINDING_ROOT"}) {
		t.Errorf("user-set %v", res.UserSetEnv)
	}
	if !slices.Equal(res.MissingContainers, []string{"gone"}) {
		t.Errorf("missing containers %v", res.MissingContainers)
	}
	tmpl := wiredTemplate(t, res.Apply)
	if len(tmpl.Spec.Containers) != 1 || tmpl.Spec.Containers[0].Name != "main" {
		t.Fatalf("containers %v: only the named one is wired", tmpl.Spec.Containers)
	}
	c := tmpl.Spec.Containers[0]
	if slices.Contains(envNames(c.Env), "REDIS_HOST") || slices.Contains(envNames(c.Env), "SERVICE_BINDING_ROOT") {
		t.Errorf("request sets the user's variables: %v", envNames(c.Env))
	}
	if c.VolumeMounts[0].MountPath != "/var/run/bindings/shop-session" {
		t.Errorf("mount %s: want under the container's own SERVICE_BINDING_ROOT", c.VolumeMounts[0].MountPath)
	}
}

// Without a store there is nothing to project: the wiring is env and labels only.
func TestWiringWithoutStore(t *testing.T) {
	sc := cluster(sessionv1.ModeClustered, func(s *sessionv1.SessionClusterSpec) {
		s.Apps[0] = sessionv1.AppSpec{Name: "web", WorkloadRef: &sessionv1.WorkloadReference{Name: "my-web", Kind: sessionv1.WorkloadStatefulSet}}
	})
	d := mustRender(t, sc)
	res, err := WiringApply(d.Wired[0], "web", []LiveContainer{{Name: "main"}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := wiredTemplate(t, res.Apply)
	if res.Apply.GetKind() != "StatefulSet" || len(tmpl.Spec.Volumes) != 0 || !slices.Contains(envNames(tmpl.Spec.Containers[0].Env), "SESSION_PEERS_DNS") {
		t.Errorf("clustered wiring: %s %+v", res.Apply.GetKind(), tmpl.Spec)
	}
	for _, o := range d.Objects {
		if svc, ok := o.(*corev1.Service); ok && svc.Spec.Selector[LabelClient] != "shop" {
			t.Errorf("service %s selects %v, not the wired pods", svc.Name, svc.Spec.Selector)
		}
	}
}

// Each template field reaches the Deployment, merged with what the operator must set.
func TestAppTemplateMerge(t *testing.T) {
	sc := cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
		s.Apps[0] = sessionv1.AppSpec{Name: "web", Env: []corev1.EnvVar{{Name: "FROM_APP", Value: "2"}}, Template: &sessionv1.AppPodTemplate{
			Metadata: sessionv1.PodMetadata{Labels: map[string]string{"team": "web"}, Annotations: map[string]string{"scrape": "true"}},
			Spec: &corev1.PodSpec{
				ServiceAccountName:        "web",
				ImagePullSecrets:          []corev1.LocalObjectReference{{Name: "registry"}},
				NodeSelector:              map[string]string{"pool": "web"},
				Tolerations:               []corev1.Toleration{{Key: "web", Operator: corev1.TolerationOpExists}},
				PriorityClassName:         "high",
				Affinity:                  &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway}},
				InitContainers:            []corev1.Container{{Name: "migrate", Image: "example/web:2"}},
				Containers: []corev1.Container{
					{Name: "proxy", Image: "example/proxy:1", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)}},
					{Name: "app", Image: "example/web:2", Env: []corev1.EnvVar{{Name: "REDIS_HOST", Value: "mine"}, {Name: "FROM_TEMPLATE", Value: "1"}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
						Ports:          []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}},
						VolumeMounts:   []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}},
				},
				Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		}}
	})
	d := mustRender(t, sc)
	dep := deploymentOf(t, d, "shop-web")
	pod := dep.Spec.Template.Spec
	if dep.Spec.Replicas != nil {
		t.Errorf("replicas %d set: unset replicas are an autoscaler's", *dep.Spec.Replicas)
	}
	if dep.Spec.Template.Labels["team"] != "web" || dep.Spec.Template.Labels[LabelInstance] != "shop" || dep.Spec.Template.Annotations["scrape"] != "true" || dep.Spec.Template.Annotations[AnnotationWiringHash] == "" {
		t.Errorf("pod metadata %v %v", dep.Spec.Template.Labels, dep.Spec.Template.Annotations)
	}
	if pod.ServiceAccountName != "web" || pod.AutomountServiceAccountToken != nil || pod.ImagePullSecrets[0].Name != "registry" || pod.NodeSelector["pool"] != "web" ||
		len(pod.Tolerations) != 1 || pod.PriorityClassName != "high" || pod.Affinity == nil || len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("pod settings lost: %+v", pod)
	}
	if pod.SecurityContext == nil || !*pod.SecurityContext.RunAsNonRoot || *pod.EnableServiceLinks {
		t.Errorf("restricted pod defaults missing: %+v", pod.SecurityContext)
	}
	if len(pod.Containers) != 2 || pod.Containers[0].Name != "proxy" {
		t.Fatalf("containers %v", pod.Containers)
	}
	if e := pod.Containers[0].Env; len(e) == 0 || !slices.Contains(envNames(e), "SESSION_REDIS_PASSWORD") || len(pod.Containers[0].VolumeMounts) != 1 {
		t.Errorf("the sidecar is not wired: %v", envNames(e))
	}
	if sc := pod.Containers[0].SecurityContext; sc.AllowPrivilegeEscalation != nil || *sc.RunAsUser != 1000 {
		t.Errorf("the sidecar's own security context was replaced: %+v", sc)
	}
	if sc := pod.InitContainers[0].SecurityContext; sc == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("init container lacks the restricted defaults: %+v", sc)
	}
	app := containerOf(t, pod, "app")
	if app.Image != "example/web:2" || app.ReadinessProbe.HTTPGet.Path != "/ready" || app.LivenessProbe == nil || app.LivenessProbe.TCPSocket.Port.StrVal != "web" {
		t.Errorf("app container %+v", app)
	}
	if len(app.Ports) != 1 {
		t.Errorf("ports %v: the template's port 8080 already serves http", app.Ports)
	}
	env := envNames(app.Env)
	if e := app.Env[slices.Index(env, "REDIS_HOST")]; e.Value != "mine" {
		t.Errorf("template REDIS_HOST lost: %+v", e)
	}
	if slices.Index(env, "SESSION_MODE") > slices.Index(env, "FROM_TEMPLATE") || slices.Index(env, "FROM_TEMPLATE") > slices.Index(env, "FROM_APP") {
		t.Errorf("env order %v: wiring, template, app", env)
	}
	if !slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/cache" }) ||
		!slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == BindingVolume }) ||
		len(pod.Volumes) != 2 {
		t.Errorf("volumes %v mounts %v", pod.Volumes, app.VolumeMounts)
	}
	var svc *corev1.Service
	for _, o := range d.Objects {
		if s, ok := o.(*corev1.Service); ok && s.Name == "shop-web" {
			svc = s
		}
	}
	if svc.Spec.Ports[0].TargetPort.StrVal != "web" {
		t.Errorf("service targets %v, want the template's name for port 8080", svc.Spec.Ports[0].TargetPort)
	}
	// Image given on the app overrides the template's.
	sc.Spec.Apps[0].Image = "example/web:3"
	if got := containerOf(t, deploymentOf(t, mustRender(t, sc), "shop-web").Spec.Template.Spec, "app").Image; got != "example/web:3" {
		t.Errorf("image %s", got)
	}
}

func TestRenderRefusesAnAppWithoutImage(t *testing.T) {
	sc := cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) {
		s.Apps[0] = sessionv1.AppSpec{Name: "web", Template: &sessionv1.AppPodTemplate{Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy", Image: "x"}}}}}
	})
	_, err := Render(sc, Options{}, Inputs{})
	if err == nil || !strings.Contains(err.Error(), "spec.apps[web].image") {
		t.Errorf("err %v", err)
	}
}

// Each placement field reaches the store's and the Sentinels' pods; the Sentinels take
// the store's unless they have their own.
func TestStorePlacement(t *testing.T) {
	placement := &sessionv1.PodSettings{
		Metadata:          sessionv1.PodMetadata{Labels: map[string]string{"team": "sessions", LabelComponent: "ignored"}, Annotations: map[string]string{"backup": "no"}},
		NodeSelector:      map[string]string{"pool": "stateful"},
		Tolerations:       []corev1.Toleration{{Key: "stateful", Operator: corev1.TolerationOpExists}},
		PriorityClassName: "critical",
		ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "registry"}},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{
			{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.DoNotSchedule},
			{MaxSkew: 1, TopologyKey: "rack", WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}},
		},
	}
	sc := cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Pod = placement })
	d := mustRender(t, sc)
	for _, name := range []string{"shop-store", "shop-sentinel"} {
		tmpl := statefulSetOf(t, d, name).Spec.Template
		pod := tmpl.Spec
		if tmpl.Labels["team"] != "sessions" || tmpl.Labels[LabelComponent] == "ignored" || tmpl.Annotations["backup"] != "no" || tmpl.Annotations[AnnotationConfigHash] == "" {
			t.Errorf("%s metadata %v %v: the user's added, the operator's kept", name, tmpl.Labels, tmpl.Annotations)
		}
		if pod.NodeSelector["pool"] != "stateful" || len(pod.Tolerations) != 1 || pod.PriorityClassName != "critical" || pod.ImagePullSecrets[0].Name != "registry" {
			t.Errorf("%s placement %+v", name, pod)
		}
		if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
			t.Errorf("%s lost the default spread without an affinity of the user's", name)
		}
		tsc := pod.TopologySpreadConstraints
		if len(tsc) != 2 || tsc[0].LabelSelector.MatchLabels[LabelInstance] != "shop" || tsc[1].LabelSelector.MatchLabels["x"] != "y" {
			t.Errorf("%s spread %+v", name, tsc)
		}
	}
	// An affinity replaces the default spread; the Sentinels' own settings and resources
	// replace the store's.
	sc.Spec.Store.Pod.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
	sc.Spec.Store.Sentinel.Pod = &sessionv1.PodSettings{PriorityClassName: "sentinels"}
	sc.Spec.Store.Sentinel.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}
	d = mustRender(t, sc)
	store, sent := statefulSetOf(t, d, "shop-store").Spec.Template.Spec, statefulSetOf(t, d, "shop-sentinel").Spec.Template.Spec
	if store.Affinity.PodAntiAffinity != nil || store.Affinity.NodeAffinity == nil {
		t.Errorf("store affinity %+v: the user's replaces the spread", store.Affinity)
	}
	if sent.PriorityClassName != "sentinels" || sent.NodeSelector != nil || sent.Affinity.PodAntiAffinity == nil {
		t.Errorf("sentinel pod %+v: its own settings only", sent)
	}
	if got := sent.Containers[0].Resources; !equality.Semantic.DeepEqual(got, sc.Spec.Store.Sentinel.Resources) {
		t.Errorf("sentinel resources %+v", got)
	}
}

func mapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
