package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// placePods applies a store pod template's placement and settings. The operator's labels
// and annotations win over the user's (its selectors and hashes depend on them); an
// affinity replaces the default one-pod-per-node preference; a topology spread
// constraint without a label selector selects the component's own pods.
func placePods(t *corev1.PodTemplateSpec, s *sessionv1.PodSettings, selector map[string]string) {
	if s == nil {
		return
	}
	t.Labels = merge(s.Metadata.Labels, t.Labels)
	if len(s.Metadata.Annotations) > 0 {
		t.Annotations = merge(s.Metadata.Annotations, t.Annotations)
	}
	p := &t.Spec
	if len(s.NodeSelector) > 0 {
		p.NodeSelector = merge(s.NodeSelector)
	}
	for _, tol := range s.Tolerations {
		p.Tolerations = append(p.Tolerations, *tol.DeepCopy())
	}
	if s.Affinity != nil {
		p.Affinity = s.Affinity.DeepCopy()
	}
	for _, c := range s.TopologySpreadConstraints {
		c := *c.DeepCopy()
		if c.LabelSelector == nil {
			c.LabelSelector = &metav1.LabelSelector{MatchLabels: merge(selector)}
		}
		p.TopologySpreadConstraints = append(p.TopologySpreadConstraints, c)
	}
	p.PriorityClassName = s.PriorityClassName
	for _, ref := range s.ImagePullSecrets {
		p.ImagePullSecrets = append(p.ImagePullSecrets, ref)
	}
}
