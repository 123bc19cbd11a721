package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
)

// Bring your own app: wiring a workload the user deploys, full pod templates for the apps
// the operator creates, and placement of the store's pods.

// WorkloadKind is the kind of a workload the operator wires but does not own.
// +kubebuilder:validation:Enum=Deployment;StatefulSet
type WorkloadKind string

const (
	WorkloadDeployment  WorkloadKind = "Deployment"
	WorkloadStatefulSet WorkloadKind = "StatefulSet"
)

// WorkloadReference names a Deployment or StatefulSet in the SessionCluster's namespace
// that the user deploys (with Helm, GitOps, kubectl) and the operator only wires.
type WorkloadReference struct {
	// kind of the workload.
	// +optional
	// +kubebuilder:default=Deployment
	Kind WorkloadKind `json:"kind,omitempty"`

	// name of the workload in the SessionCluster's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// containers are the names of the containers that receive the wiring; empty: every
	// container of the pod template (init containers are never wired).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	Containers []string `json:"containers,omitempty"`
}

// AppPodTemplate is the pod template of an app Deployment the operator creates, in the
// shape of a PodTemplateSpec. The operator merges into it what it must set: its labels
// (which win), the wiring of the container named "app" (added when the template has none),
// and the restricted security defaults wherever the template sets no security context.
type AppPodTemplate struct {
	// metadata holds the pods' labels and annotations.
	// +optional
	Metadata PodMetadata `json:"metadata,omitempty"`

	// spec is the pod spec. Its container named "app" is the app container: the app's
	// image, args, env, resources and port apply to it; other containers are sidecars.
	// +optional
	Spec *corev1.PodSpec `json:"spec,omitempty"`
}

// PodMetadata is the part of a pod's metadata a user may set.
// +kubebuilder:validation:XValidation:rule="!has(self.labels) || self.labels.all(k, !k.startsWith('session.sessionops.dev/') && !(k in ['app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/managed-by']))",message="pod labels must not use the session.sessionops.dev/ prefix or app.kubernetes.io/instance, component or managed-by: the operator selects its pods by them"
type PodMetadata struct {
	// labels added to the pods.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Labels map[string]string `json:"labels,omitempty"`

	// annotations added to the pods.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PodSettings place the store's (or the Sentinels') pods and set what they carry.
type PodSettings struct {
	// metadata holds labels and annotations added to the pods.
	// +optional
	Metadata PodMetadata `json:"metadata,omitempty"`

	// nodeSelector restricts the pods to nodes with these labels.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the pods run on tainted nodes.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity replaces the default preference for one pod per node.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// topologySpreadConstraints spread the pods across zones or nodes. Their labelSelector
	// may be left out: it then selects these pods.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// priorityClassName of the pods.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// imagePullSecrets name Secrets holding credentials for the image's registry.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}
