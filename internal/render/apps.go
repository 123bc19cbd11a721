package render

import (
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// appPodAnnotations: the wiring hash, and with a store the password version, so a change
// of either rolls the app.
func (b *builder) appPodAnnotations(app *sessionv1.AppSpec) map[string]string {
	ann := map[string]string{AnnotationWiringHash: b.wiringHash(app)}
	if b.spec.HasStore() {
		ann[AnnotationPasswordVersion] = b.podPasswordVersion(app.Name)
	}
	return ann
}

func (b *builder) appDeployment(app *sessionv1.AppSpec) *appsv1.Deployment {
	n := b.names
	var tmplMeta sessionv1.PodMetadata
	pod := corev1.PodSpec{}
	if t := app.Template; t != nil {
		tmplMeta = *t.Metadata.DeepCopy()
		if t.Spec != nil {
			pod = *t.Spec.DeepCopy()
		}
	}
	// The app container: the template's container named app, or one of the operator's.
	idx := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == AppContainer })
	if idx < 0 {
		pod.Containers = append([]corev1.Container{{Name: AppContainer}}, pod.Containers...)
		idx = 0
	}
	c := &pod.Containers[idx]
	if app.Image != "" {
		c.Image = app.Image
	}
	if app.ImagePullPolicy != "" {
		c.ImagePullPolicy = app.ImagePullPolicy
	}
	if len(app.Args) > 0 {
		c.Args = slices.Clone(app.Args)
	}
	if len(app.Resources.Limits) > 0 || len(app.Resources.Requests) > 0 {
		c.Resources = *app.Resources.DeepCopy()
	}
	userEnv := append(slices.Clone(c.Env), app.Env...)
	w := b.appWiring(app, bindingRoot(userEnv))
	c.Env = overlayEnv(w.Env, userEnv)
	c.VolumeMounts = overlay(c.VolumeMounts, w.Mounts, func(m corev1.VolumeMount) string { return m.MountPath })
	// Every other container (a sidecar) is wired too, as in a wired workload; its own
	// variables win.
	for i := range pod.Containers {
		if i == idx {
			continue
		}
		side := &pod.Containers[i]
		sw := b.appWiring(app, bindingRoot(side.Env))
		side.Env = overlayEnv(sw.Env, side.Env)
		side.VolumeMounts = overlay(side.VolumeMounts, sw.Mounts, func(m corev1.VolumeMount) string { return m.MountPath })
	}
	http := ensurePort(c, corev1.ContainerPort{Name: "http", ContainerPort: app.Port, Protocol: corev1.ProtocolTCP})
	if c.ReadinessProbe == nil {
		c.ReadinessProbe = appProbe(app, http, 5, 3)
	}
	if c.LivenessProbe == nil {
		c.LivenessProbe = appProbe(app, http, 10, 6)
	}
	zero := intstr.FromInt32(0)
	maxSurge := intstr.FromString("25%")
	if b.spec.Mode != sessionv1.ModeStore {
		// Pinned users and peers holding sessions: replace one pod at a time.
		maxSurge = intstr.FromInt32(1)
	}
	if b.spec.Mode == sessionv1.ModeClustered {
		port := b.spec.Clustering.Port
		ensurePort(c, corev1.ContainerPort{Name: "peers", ContainerPort: port, Protocol: corev1.ProtocolTCP})
		ensurePort(c, corev1.ContainerPort{Name: "peers-udp", ContainerPort: port, Protocol: corev1.ProtocolUDP})
		// A new peer copies every session from a running one before it serves (Tomcat's
		// DeltaManager state transfer, a JGroups or Hazelcast join): liveness must not kill
		// it meanwhile, and it should turn ready as soon as the copy is done.
		if c.StartupProbe == nil {
			c.StartupProbe = appProbe(app, http, 2, 90)
		}
	}
	if drain := b.drainSeconds(); drain > 0 && c.Lifecycle == nil {
		// The load balancer (or the peers) must drop a pod before it stops serving.
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: drain}}}
	}
	// The restricted defaults wherever the template sets no security context.
	for _, list := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for i := range list {
			if list[i].SecurityContext == nil {
				list[i].SecurityContext = restrictedContainer(false)
			}
		}
	}
	if pod.SecurityContext == nil {
		pod.SecurityContext = restrictedPod(nil)
	}
	if pod.EnableServiceLinks == nil {
		pod.EnableServiceLinks = boolPtr(false)
	}
	if pod.AutomountServiceAccountToken == nil && pod.ServiceAccountName == "" {
		pod.AutomountServiceAccountToken = boolPtr(false)
	}
	pod.Volumes = overlay(pod.Volumes, w.Volumes, func(v corev1.Volume) string { return v.Name })
	if grace := b.terminationGrace(); grace > 0 && pod.TerminationGracePeriodSeconds == nil {
		pod.TerminationGracePeriodSeconds = int64Ptr(grace)
	}
	if b.apiDiscovery() {
		pod.ServiceAccountName = b.names.App(app.Name)
		pod.AutomountServiceAccountToken = boolPtr(true)
	}
	labels := merge(tmplMeta.Labels, Labels(b.sc, ComponentApp, app.Name), w.Labels)
	dep := &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: b.meta(n.App(app.Name), ComponentApp, app.Name),
		Spec: appsv1.DeploymentSpec{
			// Unset: a HorizontalPodAutoscaler owns the replicas, and the operator's
			// field manager never claims them.
			Replicas: app.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: AppSelector(b.sc, app.Name)},
			// Never fewer ready pods than asked for while rolling.
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &maxSurge},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: nilIfEmpty(merge(tmplMeta.Annotations, w.Annotations)),
				},
				Spec: pod,
			},
		},
	}
	return dep
}

// AppContainer is the name of the app container in a created app's pods.
const AppContainer = "app"

// overlayEnv is the wiring followed by the user's env; a user variable replaces an
// injected one of the same name rather than shadowing it, so the container sees it once,
// and the last of several user entries of one name wins.
func overlayEnv(wiring, user []corev1.EnvVar) []corev1.EnvVar {
	last := map[string]int{}
	for i, e := range user {
		last[e.Name] = i
	}
	var env []corev1.EnvVar
	for _, e := range wiring {
		if _, ok := last[e.Name]; !ok {
			env = append(env, e)
		}
	}
	for i, e := range user {
		if last[e.Name] == i {
			env = append(env, *e.DeepCopy())
		}
	}
	return env
}

// overlay appends add to list, replacing entries of list with the same key.
func overlay[T any](list, add []T, key func(T) string) []T {
	out := slices.DeleteFunc(slices.Clone(list), func(x T) bool {
		return slices.ContainsFunc(add, func(a T) bool { return key(a) == key(x) })
	})
	return append(out, add...)
}

// ensurePort adds p to c unless c already has a port of that name, or of that number and
// protocol (the template's own name for it is kept). It returns how probes should name it.
func ensurePort(c *corev1.Container, p corev1.ContainerPort) intstr.IntOrString {
	for _, have := range c.Ports {
		proto := have.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if have.Name == p.Name || (have.ContainerPort == p.ContainerPort && proto == p.Protocol) {
			if have.Name != "" {
				return namedPort(have.Name)
			}
			return intstr.FromInt32(have.ContainerPort)
		}
	}
	c.Ports = append(c.Ports, p)
	return namedPort(p.Name)
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// drainSeconds is how long a stopping app pod keeps serving so that the load balancer
// stops sending it users first.
func (b *builder) drainSeconds() int64 {
	switch b.spec.Mode {
	case sessionv1.ModeSticky:
		return 10
	case sessionv1.ModeClustered:
		return 5
	}
	// Store: a rolling update (a password rotation rolls the apps) must not send requests
	// to a pod that has stopped listening before its endpoint left the Service.
	return 5
}

// terminationGrace leaves a clustered pod time to hand its sessions to its peers.
func (b *builder) terminationGrace() int64 {
	switch b.spec.Mode {
	case sessionv1.ModeSticky:
		return 40
	case sessionv1.ModeClustered:
		return 60
	}
	return 0
}

// appPDB keeps all but one pod of an app up through voluntary disruptions where a pod's
// loss costs sessions (sticky without a store) or replicas of them (clustered).
func (b *builder) appPDB(app *sessionv1.AppSpec) client.Object {
	// A wired workload's disruption budget is its owner's to set. Unset replicas are a
	// HorizontalPodAutoscaler's, which keeps at least two when it matters.
	if b.spec.HasStore() || app.WorkloadRef != nil || (app.Replicas != nil && *app.Replicas < 2) {
		return nil
	}
	return b.pdb(b.names.App(app.Name), ComponentApp, app.Name, AppSelector(b.sc, app.Name))
}

func appProbe(app *sessionv1.AppSpec, port intstr.IntOrString, period, failures int32) *corev1.Probe {
	h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}
	if app.HealthPath != "" {
		h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: app.HealthPath, Port: port, Scheme: corev1.URISchemeHTTP}}
	}
	return probe(h, period, 2, failures)
}

func (b *builder) appService(app *sessionv1.AppSpec) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.App(app.Name), ComponentApp, app.Name),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: PodSelector(b.sc, app),
			Ports:    []corev1.ServicePort{{Name: "http", Port: app.Port, TargetPort: b.appTargetPort(app), Protocol: corev1.ProtocolTCP}},
		},
	}
	if ann := b.serviceAffinity(app); len(ann) > 0 {
		svc.Annotations = ann
	}
	if b.sticky() && b.spec.Sticky.ClientIP != nil {
		timeout := int32(b.spec.Sticky.ClientIP.Timeout.Duration / time.Second)
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	return svc
}

// appTargetPort is the container port an app's Service sends to: the http port the
// operator names in its own pods, the number in a wired workload's (whose port names are
// its chart's) or where the template names that port otherwise.
func (b *builder) appTargetPort(app *sessionv1.AppSpec) intstr.IntOrString {
	if app.WorkloadRef != nil {
		return intstr.FromInt32(app.Port)
	}
	c := corev1.Container{}
	if t := app.Template; t != nil && t.Spec != nil {
		if i := slices.IndexFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AppContainer }); i >= 0 {
			c = *t.Spec.Containers[i].DeepCopy()
		}
	}
	return ensurePort(&c, corev1.ContainerPort{Name: "http", ContainerPort: app.Port, Protocol: corev1.ProtocolTCP})
}
