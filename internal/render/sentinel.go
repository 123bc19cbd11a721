package render

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// sentinelStatefulSet runs the Sentinels as a StatefulSet for the same reason as the
// servers: each has a stable DNS name to announce, so restarts never leave stale peers.
func (b *builder) sentinelStatefulSet() *appsv1.StatefulSet {
	st := b.spec.Store
	n := b.names
	sel := Selector(b.sc, ComponentSentinel)
	script := func(name string, args ...string) []string {
		return append([]string{"/bin/sh", ConfigDir + "/" + name}, args...)
	}
	container := corev1.Container{
		Name:            "sentinel",
		Image:           st.Image,
		ImagePullPolicy: st.ImagePullPolicy,
		Command:         script("sentinel-boot.sh"),
		Env:             b.storeEnv("SENTINEL_DOMAIN", n.SentinelDomain()),
		Ports:           []corev1.ContainerPort{{Name: "sentinel", ContainerPort: SentinelPort, Protocol: corev1.ProtocolTCP}},
		StartupProbe:    execProbe(5, 4, 60, script("sentinel-probe.sh", "live")...),
		LivenessProbe:   execProbe(10, 5, 6, script("sentinel-probe.sh", "live")...),
		ReadinessProbe:  execProbe(5, 4, 2, script("sentinel-probe.sh", "ready")...),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: restrictedContainer(true),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: ConfigDir, ReadOnly: true},
			{Name: "run", MountPath: RunDir},
		},
	}
	return &appsv1.StatefulSet{
		TypeMeta:   typeMeta("apps/v1", "StatefulSet"),
		ObjectMeta: b.meta(n.Sentinel(), ComponentSentinel, "redis-sentinel"),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            int32Ptr(st.Sentinel.Replicas),
			ServiceName:         n.Sentinel(),
			Selector:            &metav1.LabelSelector{MatchLabels: sel},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      Labels(b.sc, ComponentSentinel, "redis-sentinel"),
					Annotations: map[string]string{AnnotationConfigHash: b.configHash("sentinel.conf", "sentinel-master.conf", "common.sh", "sentinel-boot.sh", "sentinel-probe.sh")},
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  boolPtr(false),
					EnableServiceLinks:            boolPtr(false),
					ShareProcessNamespace:         boolPtr(true), // see reapByPause
					TerminationGracePeriodSeconds: int64Ptr(10),
					SecurityContext:               restrictedPod(int64Ptr(StoreUID)),
					Affinity:                      spreadAcrossNodes(sel),
					Containers:                    []corev1.Container{container},
					Volumes:                       b.storeVolumes(),
				},
			},
		},
	}
}

// sentinelService is headless: clients and peers address each Sentinel by its own name.
func (b *builder) sentinelService() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.Sentinel(), ComponentSentinel, "redis-sentinel"),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 Selector(b.sc, ComponentSentinel),
			PublishNotReadyAddresses: true,
			Ports:                    []corev1.ServicePort{tcpPort("sentinel", SentinelPort)},
		},
	}
}
