package render

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// ClaimTemplateName names the servers' claim template; claims are
// <ClaimTemplateName>-<store StatefulSet>-<ordinal>.
const ClaimTemplateName = "data"

// PreStopSeconds is how long a stopping primary waits for the Sentinels to hand over.
const PreStopSeconds = 30

// reapByPause: the Redis and Sentinel pods share one process namespace, so that the pod's
// pause process is PID 1 and reaps orphans. The probes and boot scripts run redis-cli under
// busybox `timeout`, whose watchdog child outlives the command; with redis-server as PID 1
// those orphans stayed zombies (Redis reaps only while it has a fork child), about 18 a
// minute per pod on a real cluster, and redis-sentinel logged each one it reaped
// ("waitpid() returned a pid ... we can't find").

// storeEnv is the environment the boot and probe scripts read (see scripts/common.sh).
// The host lists are not in it: they change with spec.store.replicas and
// spec.store.sentinel.replicas, and a changed env would roll every pod (and fail the
// primary over) on a mere scale. The scripts read them from the ConfigMap files
// HostsFileStore and HostsFileSentinel, which the config hash leaves out.
func (b *builder) storeEnv(domainVar, domain string) []corev1.EnvVar {
	st := b.spec.Store
	n := b.names
	return []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		{Name: domainVar, Value: domain},
		{Name: "MASTER_NAME", Value: n.MasterName()},
		{Name: "SENTINEL_QUORUM", Value: strconv.Itoa(int(st.Sentinel.Quorum))},
		{Name: "REDIS_PORT", Value: strconv.Itoa(RedisPort)},
		{Name: "SENTINEL_PORT", Value: strconv.Itoa(SentinelPort)},
		{Name: "CONFIG_DIR", Value: ConfigDir},
		{Name: "RUN_DIR", Value: RunDir},
		{Name: "DATA_DIR", Value: DataDir},
		{Name: "PRESTOP_SECONDS", Value: strconv.Itoa(PreStopSeconds)},
		// The scripts' redis-cli authenticates as the operator user; the other internal
		// passwords are read from the users Secret mounted at USERS_DIR.
		{Name: "USERS_DIR", Value: UsersDir},
		{Name: "REDISCLI_USER", Value: UserOperator},
		secretEnv("REDISCLI_AUTH", b.operatorPasswordRef()),
	}
}

func (b *builder) storeVolumes() []corev1.Volume {
	vols := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: b.names.StoreConfig()},
			DefaultMode:          int32Ptr(0o444),
		}}},
		// The runtime configuration holds the password: memory-backed, private to the pod.
		{Name: "run", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptrQuantity("1Mi"),
		}}},
		// The ACL users (password hashes) and the internal users' passwords; the kubelet
		// refreshes it, so a pod that restarts during a rotation boots with the current set.
		{Name: "users", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: b.names.UsersSecret(), DefaultMode: int32Ptr(0o440),
		}}},
	}
	return vols
}

func storeMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: "config", MountPath: ConfigDir, ReadOnly: true},
		{Name: "run", MountPath: RunDir},
		{Name: "data", MountPath: DataDir},
		{Name: "users", MountPath: UsersDir, ReadOnly: true},
	}
}

func (b *builder) storeResources() corev1.ResourceRequirements {
	st := b.spec.Store
	if len(st.Resources.Requests) > 0 || len(st.Resources.Limits) > 0 {
		return *st.Resources.DeepCopy()
	}
	// Redis needs room beyond maxmemory for buffers, and a replication fork can double
	// the resident set while it streams a snapshot.
	mem := st.MaxMemory.Value()
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: *resource.NewQuantity(mem+mem/4+32<<20, resource.BinarySI),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: *resource.NewQuantity(2*mem+64<<20, resource.BinarySI),
		},
	}
}

// storeScript is the command running one of the store's scripts from its ConfigMap.
func storeScript(name string, args ...string) []string {
	return append([]string{"/bin/sh", ConfigDir + "/" + name}, args...)
}

// storeSet is what the servers and the Sentinels share: a StatefulSet, so each pod has a
// stable DNS name to announce, started in parallel, restricted, spread across nodes, and
// rolled when the configuration files it boots from change.
func (b *builder) storeSet(name, component, appName, service string, replicas int32, grace int64, files []string, c corev1.Container, pod *sessionv1.PodSettings, update appsv1.StatefulSetUpdateStrategyType) *appsv1.StatefulSet {
	sel := Selector(b.sc, component)
	sts := &appsv1.StatefulSet{
		TypeMeta:   typeMeta("apps/v1", "StatefulSet"),
		ObjectMeta: b.meta(name, component, appName),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            int32Ptr(replicas),
			ServiceName:         service,
			Selector:            &metav1.LabelSelector{MatchLabels: sel},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: update},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      Labels(b.sc, component, appName),
					Annotations: map[string]string{AnnotationConfigHash: b.configHash(files...)},
				},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  boolPtr(false),
					EnableServiceLinks:            boolPtr(false),
					ShareProcessNamespace:         boolPtr(true), // see reapByPause
					TerminationGracePeriodSeconds: int64Ptr(grace),
					SecurityContext:               restrictedPod(int64Ptr(StoreUID)),
					Affinity:                      spreadAcrossNodes(sel),
					Containers:                    []corev1.Container{c},
					Volumes:                       b.storeVolumes(),
				},
			},
		},
	}
	placePods(&sts.Spec.Template, pod, sel)
	return sts
}

func (b *builder) storeStatefulSet() *appsv1.StatefulSet {
	st := b.spec.Store
	n := b.names
	container := corev1.Container{
		Name:            "redis",
		Image:           st.Image,
		ImagePullPolicy: st.ImagePullPolicy,
		Command:         storeScript("redis-boot.sh"),
		Env:             b.storeEnv("STORE_DOMAIN", n.StoreDomain()),
		Ports:           []corev1.ContainerPort{{Name: "redis", ContainerPort: RedisPort, Protocol: corev1.ProtocolTCP}},
		// A server may wait for a failover before it starts; the startup probe gives it
		// that time, then liveness takes over.
		StartupProbe:   execProbe(5, 4, 120, storeScript("redis-probe.sh", "live")...),
		LivenessProbe:  execProbe(10, 5, 6, storeScript("redis-probe.sh", "live")...),
		ReadinessProbe: execProbe(5, 4, 2, storeScript("redis-probe.sh", "ready")...),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: storeScript("redis-prestop.sh")},
		}},
		Resources:       b.storeResources(),
		SecurityContext: restrictedContainer(true),
		VolumeMounts:    storeMounts(),
	}
	sts := b.storeSet(n.Store(), ComponentStore, "redis", n.StoreHeadless(), st.Replicas, PreStopSeconds+15,
		[]string{"redis.conf", "common.sh", "redis-boot.sh", "redis-probe.sh", "redis-prestop.sh"}, container, st.Pod,
		// The operator replaces the servers itself (controllers/rollout.go): replicas
		// first, then one planned switchover, then the old primary. A RollingUpdate would
		// take the pods in ordinal order and hand the primary over to the next pod it is
		// about to replace, so the primary would change twice.
		appsv1.OnDeleteStatefulSetStrategyType)
	b.storeData(sts)
	return sts
}

// storeData gives the servers their data volume: a claim per server with persistence,
// else an emptyDir.
func (b *builder) storeData(sts *appsv1.StatefulSet) {
	st := b.spec.Store
	labels := sts.Spec.Template.Labels
	if p := st.Persistence; p != nil {
		policy := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		if p.DeleteClaim {
			policy = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}
		// Claims of replicas removed by a scale-down follow deleteClaim too: kept claims
		// would hold stale data that a later scale-up attaches again.
		sts.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: policy,
			WhenScaled:  policy,
		}
		sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
			ObjectMeta: metav1.ObjectMeta{Name: ClaimTemplateName, Labels: labels},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: p.StorageClassName,
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: p.Size}},
			},
		}}
	} else {
		sts.Spec.Template.Spec.Volumes = append(sts.Spec.Template.Spec.Volumes, corev1.Volume{
			Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		})
	}
}

// configHash changes whenever the named configuration files change, so that editing
// what a pod boots from rolls it.
func (b *builder) configHash(files ...string) string {
	all := StoreConfigFiles(b.storeParams())
	picked := make(map[string]string, len(files))
	for _, f := range files {
		picked[f] = all[f]
	}
	// The internal users' passwords are read at boot; new ones (a store started over) must
	// restart the pods. App passwords are not here: a rotation changes them live, never by
	// restarting the store.
	in := b.in.Internal
	picked["internal-users"] = Hash([]string{PasswordHash(in.Operator), PasswordHash(in.Replication), PasswordHash(in.Sentinel)})
	return Hash(picked)
}

func (b *builder) storeHeadlessService() *corev1.Service {
	ports := []corev1.ServicePort{tcpPort("redis", RedisPort)}
	if b.spec.Sharded() {
		ports = append(ports, tcpPort("cluster-bus", ClusterBusPort))
	}
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.StoreHeadless(), ComponentStore, "redis"),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  Selector(b.sc, ComponentStore),
			// Servers must find each other, and Sentinels them, before they are ready.
			PublishNotReadyAddresses: true,
			Ports:                    ports,
		},
	}
}

// storePrimaryService always points at the current primary, through the role label the
// operator keeps on the pods, for clients that cannot follow Sentinel.
func (b *builder) storePrimaryService() *corev1.Service {
	sel := Selector(b.sc, ComponentStore)
	sel[LabelRole] = RolePrimary
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.Store(), ComponentStore, "redis"),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: sel,
			Ports:    []corev1.ServicePort{tcpPort("redis", RedisPort)},
		},
	}
}

func tcpPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: namedPort(name), Protocol: corev1.ProtocolTCP}
}

func ptrQuantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
