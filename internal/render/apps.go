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
	labels := merge(Labels(b.sc, ComponentApp, app.Name), map[string]string{LabelApp: app.Name})
	container := corev1.Container{
		Name:            "app",
		Image:           app.Image,
		ImagePullPolicy: app.ImagePullPolicy,
		Args:            slices.Clone(app.Args),
		Env:             b.appEnv(app),
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: app.Port, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe:  appProbe(app, 5, 3),
		LivenessProbe:   appProbe(app, 10, 6),
		Resources:       *app.Resources.DeepCopy(),
		SecurityContext: restrictedContainer(false),
	}
	zero := intstr.FromInt32(0)
	maxSurge := intstr.FromString("25%")
	if b.spec.Mode != sessionv1.ModeStore {
		// Pinned users and peers holding sessions: replace one pod at a time.
		maxSurge = intstr.FromInt32(1)
	}
	if b.spec.Mode == sessionv1.ModeClustered {
		port := b.spec.Clustering.Port
		container.Ports = append(container.Ports,
			corev1.ContainerPort{Name: "peers", ContainerPort: port, Protocol: corev1.ProtocolTCP},
			corev1.ContainerPort{Name: "peers-udp", ContainerPort: port, Protocol: corev1.ProtocolUDP})
		// A new peer copies every session from a running one before it serves (Tomcat's
		// DeltaManager state transfer, a JGroups or Hazelcast join): liveness must not kill
		// it meanwhile, and it should turn ready as soon as the copy is done.
		container.StartupProbe = appProbe(app, 2, 90)
	}
	if drain := b.drainSeconds(); drain > 0 {
		// The load balancer (or the peers) must drop a pod before it stops serving.
		container.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: drain}}}
	}
	dep := &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: b.meta(n.App(app.Name), ComponentApp, app.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: int32Ptr(*app.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: AppSelector(b.sc, app.Name)},
			// Never fewer ready pods than asked for while rolling.
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &maxSurge},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: b.appPodAnnotations(app),
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: boolPtr(false),
					EnableServiceLinks:           boolPtr(false),
					SecurityContext:              restrictedPod(nil),
					Containers:                   []corev1.Container{container},
				},
			},
		},
	}
	pod := &dep.Spec.Template.Spec
	if grace := b.terminationGrace(); grace > 0 {
		pod.TerminationGracePeriodSeconds = int64Ptr(grace)
	}
	if b.apiDiscovery() {
		pod.ServiceAccountName = b.names.App(app.Name)
		pod.AutomountServiceAccountToken = boolPtr(true)
	}
	return dep
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
	if b.spec.HasStore() || *app.Replicas < 2 {
		return nil
	}
	return b.pdb(b.names.App(app.Name), ComponentApp, app.Name, AppSelector(b.sc, app.Name))
}

func appProbe(app *sessionv1.AppSpec, period, failures int32) *corev1.Probe {
	h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: namedPort("http")}}
	if app.HealthPath != "" {
		h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: app.HealthPath, Port: namedPort("http"), Scheme: corev1.URISchemeHTTP}}
	}
	return probe(h, period, 2, failures)
}

func (b *builder) appService(app *sessionv1.AppSpec) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.App(app.Name), ComponentApp, app.Name),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: AppSelector(b.sc, app.Name),
			Ports:    []corev1.ServicePort{{Name: "http", Port: app.Port, TargetPort: namedPort("http"), Protocol: corev1.ProtocolTCP}},
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
