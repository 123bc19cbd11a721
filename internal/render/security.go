package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StoreUID is the user the store runs as: the redis user of the official images.
const StoreUID = int64(999)

// restrictedPod is a pod security context that passes the restricted Pod Security Standard.
func restrictedPod(uid *int64) *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{
		RunAsNonRoot:   boolPtr(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if uid != nil {
		sc.RunAsUser = uid
		sc.RunAsGroup = uid
		sc.FSGroup = uid
	}
	return sc
}

// restrictedContainer is a container security context that passes the restricted Pod
// Security Standard.
func restrictedContainer(readOnlyRoot bool) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: boolPtr(false),
		ReadOnlyRootFilesystem:   boolPtr(readOnlyRoot),
		RunAsNonRoot:             boolPtr(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// probe fills every field the apiserver would otherwise default, so that comparing the
// desired object with the stored one sees no difference where there is none.
func probe(h corev1.ProbeHandler, period, timeout, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     h,
		PeriodSeconds:    period,
		TimeoutSeconds:   timeout,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

func execProbe(period, timeout, failures int32, cmd ...string) *corev1.Probe {
	return probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}, period, timeout, failures)
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

func secretEnv(name string, ref *corev1.SecretKeySelector) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref.DeepCopy()}}
}

// spreadAcrossNodes prefers one pod of a selector per node, so one node loss takes one
// server, not the whole store.
func spreadAcrossNodes(selector map[string]string) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
				TopologyKey:   "kubernetes.io/hostname",
			},
		}},
	}}
}
