package render

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

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
	maxSurge := intstr.FromString("25%")
	zero := intstr.FromInt32(0)
	return &appsv1.Deployment{
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
					Annotations: map[string]string{AnnotationWiringHash: b.wiringHash(app)},
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
}

func appProbe(app *sessionv1.AppSpec, period, failures int32) *corev1.Probe {
	h := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: namedPort("http")}}
	if app.HealthPath != "" {
		h = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: app.HealthPath, Port: namedPort("http"), Scheme: corev1.URISchemeHTTP}}
	}
	return probe(h, period, 2, failures)
}

func (b *builder) appService(app *sessionv1.AppSpec) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.App(app.Name), ComponentApp, app.Name),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: AppSelector(b.sc, app.Name),
			Ports:    []corev1.ServicePort{{Name: "http", Port: app.Port, TargetPort: namedPort("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
}
