package render

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// sentinelStatefulSet runs the Sentinels as a StatefulSet like the servers: a restarted
// Sentinel announces the same name, so no stale peers pile up.
func (b *builder) sentinelStatefulSet() *appsv1.StatefulSet {
	st := b.spec.Store
	n := b.names
	container := corev1.Container{
		Name:            "sentinel",
		Image:           st.Image,
		ImagePullPolicy: st.ImagePullPolicy,
		Command:         storeScript("sentinel-boot.sh"),
		Env:             b.storeEnv("SENTINEL_DOMAIN", n.SentinelDomain()),
		Ports:           []corev1.ContainerPort{{Name: "sentinel", ContainerPort: SentinelPort, Protocol: corev1.ProtocolTCP}},
		StartupProbe:    execProbe(5, 4, 60, storeScript("sentinel-probe.sh", "live")...),
		LivenessProbe:   execProbe(10, 5, 6, storeScript("sentinel-probe.sh", "live")...),
		ReadinessProbe:  execProbe(5, 4, 2, storeScript("sentinel-probe.sh", "ready")...),
		Resources:       b.sentinelResources(),
		SecurityContext: restrictedContainer(true),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: ConfigDir, ReadOnly: true},
			{Name: "run", MountPath: RunDir},
			{Name: "users", MountPath: UsersDir, ReadOnly: true},
		},
	}
	return b.storeSet(n.Sentinel(), ComponentSentinel, "redis-sentinel", n.Sentinel(), st.Sentinel.Replicas, 10,
		[]string{"sentinel.conf", "sentinel-master.conf", "common.sh", "sentinel-boot.sh", "sentinel-probe.sh"}, container, b.sentinelPod(),
		// A Sentinel holds no data and is ready only once it can take part in a failover:
		// rolling them in order is safe.
		appsv1.RollingUpdateStatefulSetStrategyType)
}

func (b *builder) sentinelResources() corev1.ResourceRequirements {
	if r := b.spec.Store.Sentinel.Resources; len(r.Requests) > 0 || len(r.Limits) > 0 {
		return *r.DeepCopy()
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
}

// sentinelPod is the Sentinels' own pod settings, else the servers'.
func (b *builder) sentinelPod() *sessionv1.PodSettings {
	if p := b.spec.Store.Sentinel.Pod; p != nil {
		return p
	}
	return b.spec.Store.Pod
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
