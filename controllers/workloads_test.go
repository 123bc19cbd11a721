package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// userDeployment is a user's chart's Deployment: its own labels, a sidecar, its own
// variables, one of them a wired name (REDIS_HOST) it sets itself.
func userDeployment(ns, revision string) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "my-web", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/instance": "my-release", "app.kubernetes.io/managed-by": "Helm"}, Annotations: map[string]string{"meta.helm.sh/revision": revision}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "my-release"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/instance": "my-release", "app.kubernetes.io/managed-by": "Helm"}, Annotations: map[string]string{"team": "shop"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{
						{Name: "web", Image: "example/shop:1.4", Env: []corev1.EnvVar{{Name: "USER_VAR", Value: "1"}, {Name: "REDIS_HOST", Value: "users-own-redis"}},
							Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}},
						{Name: "logs", Image: "example/logs:1"},
					},
					Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

// helmApply applies obj as the user's own field manager would (Helm 4, kubectl
// --server-side, a GitOps controller): every field it sets is its own.
func helmApply(t *testing.T, obj client.Object) {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: raw}
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	if err := k8s.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("helm"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func envOf(c corev1.Container, name string) *corev1.EnvVar {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return nil
	}
	return &c.Env[i]
}

// fullTemplateApp is a created app using every template field, its replicas left to an
// autoscaler.
func fullTemplateApp() sessionv1.AppSpec {
	return sessionv1.AppSpec{Name: "api", Path: "/api", Template: &sessionv1.AppPodTemplate{
		Metadata: sessionv1.PodMetadata{Labels: map[string]string{"team": "api"}, Annotations: map[string]string{"prometheus.io/scrape": "true"}},
		Spec: &corev1.PodSpec{
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry"}},
			ServiceAccountName: "api",
			NodeSelector:       map[string]string{"pool": "web"},
			Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule}},
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "example/api:2", Args: []string{"migrate"}}},
			Containers: []corev1.Container{
				{Name: "app", Image: "example/api:2", Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 3},
					VolumeMounts:   []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}},
					Resources:      corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}},
				{Name: "proxy", Image: "example/proxy:1", Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 9000}}},
			},
			Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("64Mi"))}}}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "api"}}}},
		},
	}}
}

func storePlacement() *sessionv1.PodSettings {
	return &sessionv1.PodSettings{
		Metadata:          sessionv1.PodMetadata{Labels: map[string]string{"team": "sessions"}, Annotations: map[string]string{"backup": "no"}},
		NodeSelector:      map[string]string{"pool": "stateful"},
		Tolerations:       []corev1.Toleration{{Key: "stateful", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		PriorityClassName: "system-cluster-critical",
		ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "registry"}},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.DoNotSchedule,
		}},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/arch", Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64", "arm64"}}}}},
		}}},
	}
}

// TestWiredWorkload: a user's Deployment made first by its own field manager is wired,
// keeps every field it had and its own value of a wired variable, carries no owner
// reference, is not fought over by a re-apply of its manager, costs no write when nothing
// changed (with every template and placement field in use beside it), loses exactly the
// wiring when its app leaves the spec, and survives the SessionCluster's deletion.
func TestWiredWorkload(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	helmApply(t, userDeployment(ns, "1"))
	before := &appsv1.Deployment{}
	if err := get(t, ns, "my-web", before); err != nil {
		t.Fatal(err)
	}

	sc := storeCluster(ns)
	sc.Spec.Apps = []sessionv1.AppSpec{{Name: "web", Port: 8080, WorkloadRef: &sessionv1.WorkloadReference{Name: "my-web"}}, fullTemplateApp()}
	sc.Spec.Store.Pod = storePlacement()
	sc.Spec.Store.Sentinel.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("48Mi")}}
	create(t, sc)

	wired := &appsv1.Deployment{}
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "my-web", wired); err != nil {
			return err
		}
		if wired.Labels[render.LabelWiredTo] != "shop" || envOf(wired.Spec.Template.Spec.Containers[0], "SESSION_REDIS_PASSWORD") == nil {
			return errors.New("not wired yet")
		}
		return nil
	})
	if refs := wired.GetOwnerReferences(); len(refs) != 0 {
		t.Errorf("wired workload has owner references %v", refs)
	}
	web, logs := wired.Spec.Template.Spec.Containers[0], wired.Spec.Template.Spec.Containers[1]
	if web.Image != "example/shop:1.4" || *wired.Spec.Replicas != 2 || wired.Annotations["meta.helm.sh/revision"] != "1" || wired.Spec.Template.Annotations["team"] != "shop" {
		t.Errorf("the user's fields changed: %+v", wired.Spec)
	}
	if e := envOf(web, "USER_VAR"); e == nil || e.Value != "1" {
		t.Errorf("USER_VAR is %+v", e)
	}
	if e := envOf(web, "REDIS_HOST"); e == nil || e.Value != "users-own-redis" {
		t.Errorf("the user's REDIS_HOST lost to the wiring: %+v", e)
	}
	for _, c := range []corev1.Container{web, logs} {
		pw := envOf(c, "SESSION_REDIS_PASSWORD")
		user := envOf(c, "SESSION_REDIS_USERNAME")
		if pw == nil || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil || pw.Value != "" || user == nil || user.ValueFrom.SecretKeyRef.Key != "web.username" {
			t.Errorf("container %s: password %+v, username %+v: want secretKeyRefs", c.Name, pw, user)
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/bindings/shop-session" }) {
			t.Errorf("container %s has no binding mount: %+v", c.Name, c.VolumeMounts)
		}
		if e := envOf(c, "SERVICE_BINDING_ROOT"); e == nil || e.Value != "/bindings" {
			t.Errorf("container %s SERVICE_BINDING_ROOT %+v", c.Name, e)
		}
	}
	if wired.Spec.Template.Labels[render.LabelClient] != "shop" || wired.Spec.Template.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("pod labels %v", wired.Spec.Template.Labels)
	}
	svc := &corev1.Service{}
	if err := get(t, ns, "shop-web", svc); err != nil || svc.Spec.Selector[render.LabelClient] != "shop" || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("service of the wired app: %v %+v", err, svc.Spec)
	}
	// The created app with a full template: replicas left unset for an autoscaler.
	api := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop-api"}}
	waitChildren(t, ns, []client.Object{api})
	if err := get(t, ns, "shop-api", api); err != nil {
		t.Fatal(err)
	}
	mf := api.GetManagedFields()
	for _, e := range mf {
		if e.Manager == "session-operator" && e.FieldsV1 != nil && containsField(e.FieldsV1.Raw, `"f:replicas"`) {
			t.Errorf("the operator owns spec.replicas of an app whose replicas are unset")
		}
	}
	eventually(t, 20*time.Second, func() error {
		_, got := condition(t, ns, "shop", sessionv1.ConditionAppsReady)
		if len(got.Status.Apps) == 0 || !slices.Equal(got.Status.Apps[0].UserSetEnv, []string{"REDIS_HOST"}) || got.Status.Apps[0].Workload != "Deployment/my-web" {
			return fmt.Errorf("apps status %+v", got.Status.Apps)
		}
		return nil
	})
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, "")
	settle(t)

	// helm upgrade: its manager applies its manifest again (a new revision annotation).
	// No pass may remove the wiring or write.
	writes, logged := managerWrites.Writes(), managerWrites.LoggedWrites()
	rec := reconciles(t)
	helmApply(t, userDeployment(ns, "2"))
	eventually(t, 10*time.Second, func() error {
		if reconciles(t) < rec+1 {
			return errors.New("no reconcile after the re-apply")
		}
		return nil
	})
	for i := range 3 {
		pokeAndWait(t, ns, i)
	}
	time.Sleep(500 * time.Millisecond)
	if got := managerWrites.Writes() - writes; got != 0 {
		t.Errorf("passes after a re-apply by the user's manager made %d writes: %v", got, managerWrites.WritesSince(logged))
	}
	if err := get(t, ns, "my-web", wired); err != nil {
		t.Fatal(err)
	}
	if envOf(wired.Spec.Template.Spec.Containers[0], "SESSION_REDIS_SENTINEL_ADDRS") == nil || wired.Annotations["meta.helm.sh/revision"] != "2" {
		t.Errorf("after the re-apply: wiring %v, revision %s", wired.Spec.Template.Spec.Containers[0].Env, wired.Annotations["meta.helm.sh/revision"])
	}

	// The app leaves the spec: exactly the wired fields go.
	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) { s.Apps = s.Apps[1:] })
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "my-web", wired); err != nil {
			return err
		}
		if _, ok := wired.Labels[render.LabelWiredTo]; ok {
			return errors.New("still wired")
		}
		return nil
	})
	if !equality.Semantic.DeepEqual(before.Spec, wired.Spec) {
		t.Errorf("unwired spec differs from the user's:\nbefore %+v\nafter  %+v", before.Spec.Template, wired.Spec.Template)
	}
	if !equality.Semantic.DeepEqual(before.Labels, wired.Labels) || len(wired.Annotations) != 1 {
		t.Errorf("unwired metadata: labels %v annotations %v", wired.Labels, wired.Annotations)
	}
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		if slices.Contains(sc.Finalizers, FinalizerUnwire) {
			return errors.New("finalizer kept with nothing wired")
		}
		return nil
	})

	// Wired again, then the SessionCluster is deleted: the workload stays, unwired.
	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) {
		s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "web", Port: 8080, WorkloadRef: &sessionv1.WorkloadReference{Name: "my-web"}})
	})
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "my-web", wired); err != nil {
			return err
		}
		if wired.Labels[render.LabelWiredTo] != "shop" {
			return errors.New("not wired again")
		}
		return nil
	})
	if err := get(t, ns, "shop", sc); err != nil || !slices.Contains(sc.Finalizers, FinalizerUnwire) {
		t.Fatalf("wiring without the unwire finalizer: %v %v", err, sc.Finalizers)
	}
	if err := k8s.Delete(ctx, sc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "shop", &sessionv1.SessionCluster{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("SessionCluster still there: %v", err)
		}
		return nil
	})
	if err := get(t, ns, "my-web", wired); err != nil {
		t.Fatalf("the user's workload did not survive the SessionCluster: %v", err)
	}
	if !equality.Semantic.DeepEqual(before.Spec, wired.Spec) {
		t.Errorf("after deletion the wiring is left: %+v", wired.Spec.Template.Spec.Containers)
	}
}

// TestWiredWorkloadMissing: a workloadRef naming nothing is reported by name, and the
// workload is wired once it appears.
func TestWiredWorkloadMissing(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Apps = []sessionv1.AppSpec{{Name: "web", WorkloadRef: &sessionv1.WorkloadReference{Name: "my-web"}}}
	create(t, sc)
	got := waitCondition(t, ns, "shop", sessionv1.ConditionAppsReady, metav1.ConditionFalse, sessionv1.ReasonWorkloadNotWired)
	c, _ := condition(t, ns, "shop", sessionv1.ConditionAppsReady)
	if want := "Deployment my-web not found"; !containsField([]byte(c.Message), want) || !containsField([]byte(got.Status.Apps[0].Message), want) {
		t.Errorf("condition %q, app status %q: want %q", c.Message, got.Status.Apps[0].Message, want)
	}
	if _, err := getDeployment(ns, "my-web"); !apierrors.IsNotFound(err) {
		t.Errorf("the operator created the missing workload: %v", err)
	}
	helmApply(t, userDeployment(ns, "1"))
	eventually(t, 45*time.Second, func() error {
		d, err := getDeployment(ns, "my-web")
		if err != nil {
			return err
		}
		if d.Labels[render.LabelWiredTo] != "shop" {
			return errors.New("not wired yet")
		}
		return nil
	})
}

func getDeployment(ns, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	return d, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, d)
}

func pokeAndWait(t *testing.T, ns string, i int) {
	t.Helper()
	sc := &sessionv1.SessionCluster{}
	before := reconciles(t)
	if err := get(t, ns, "shop", sc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(sc.DeepCopy())
	metav1.SetMetaDataAnnotation(&sc.ObjectMeta, "test/poke", fmt.Sprint(i))
	if err := k8s.Patch(context.Background(), sc, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if reconciles(t) < before+1 {
			return errors.New("no reconcile yet")
		}
		return nil
	})
}

func containsField(raw []byte, s string) bool { return strings.Contains(string(raw), s) }

// updateSpec edits the SessionCluster "shop", again on a conflict with the operator's own
// writes (its finalizer, its status).
func updateSpec(t *testing.T, ns string, edit func(*sessionv1.SessionClusterSpec)) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		sc := &sessionv1.SessionCluster{}
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		edit(&sc.Spec)
		return k8s.Update(context.Background(), sc)
	})
}

// TestWiredStatefulSetAndSecondCluster: a StatefulSet is wired like a Deployment (only
// the containers named), and a second SessionCluster naming the same workload is told
// who wires it, without touching it.
func TestWiredStatefulSetAndSecondCluster(t *testing.T) {
	ns := namespace(t)
	dep := userDeployment(ns, "1")
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "my-web", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "my-web", Selector: dep.Spec.Selector, Template: dep.Spec.Template,
		},
	}
	helmApply(t, sts)
	sc := storeCluster(ns)
	sc.Spec.Apps = []sessionv1.AppSpec{{Name: "web", WorkloadRef: &sessionv1.WorkloadReference{Kind: sessionv1.WorkloadStatefulSet, Name: "my-web", Containers: []string{"web"}}}}
	create(t, sc)
	got := &appsv1.StatefulSet{}
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "my-web", got); err != nil {
			return err
		}
		if got.Labels[render.LabelWiredTo] != "shop" {
			return errors.New("not wired yet")
		}
		return nil
	})
	web, logs := got.Spec.Template.Spec.Containers[0], got.Spec.Template.Spec.Containers[1]
	if envOf(web, "SESSION_REDIS_SENTINEL_MASTER") == nil || envOf(logs, "SESSION_REDIS_SENTINEL_MASTER") != nil || len(logs.VolumeMounts) != 0 {
		t.Errorf("only container web is to be wired: web %v, logs %v", web.Env, logs.Env)
	}
	if len(got.OwnerReferences) != 0 {
		t.Errorf("owner references %v", got.OwnerReferences)
	}

	other := storeCluster(ns)
	other.Name = "other"
	other.Spec.Apps = sc.Spec.Apps
	create(t, other)
	st := waitCondition(t, ns, "other", sessionv1.ConditionAppsReady, metav1.ConditionFalse, sessionv1.ReasonWorkloadNotWired)
	if msg := st.Status.Apps[0].Message; !strings.Contains(msg, "wired by SessionCluster shop") {
		t.Errorf("second cluster's app message %q", msg)
	}
	if err := get(t, ns, "my-web", got); err != nil || got.Labels[render.LabelWiredTo] != "shop" ||
		envOf(got.Spec.Template.Spec.Containers[0], "SESSION_REDIS_SENTINEL_MASTER").Value != "shop" {
		t.Errorf("the second cluster touched the workload: %v %v", err, got.Labels)
	}
}

// TestAppWithoutImage: a created app whose template has no app container with an image
// passes the CRD (its rules cannot afford to look into every container) and is refused
// by the operator as InvalidSpec, naming the field, before anything is written.
func TestAppWithoutImage(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Apps = []sessionv1.AppSpec{{Name: "web", Template: &sessionv1.AppPodTemplate{Spec: &corev1.PodSpec{
		Containers: []corev1.Container{{Name: "proxy", Image: "example/proxy:1"}},
	}}}}
	create(t, sc)
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonInvalidSpec)
	c, _ := condition(t, ns, "shop", sessionv1.ConditionDegraded)
	if !strings.Contains(c.Message, "spec.apps[web].image") {
		t.Errorf("message %q does not name the field", c.Message)
	}
	if err := get(t, ns, "shop-store-auth", &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("children were written for a spec that cannot be honoured: %v", err)
	}
}
