package render

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// peerService is headless and publishes pods before they are ready, so a new pod finds
// the old ones while it starts: scaling out changes nothing on the existing servers.
// Membership protocols gossip over both TCP and UDP.
func (b *builder) peerService(app *sessionv1.AppSpec) *corev1.Service {
	port := b.spec.Clustering.Port
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: b.meta(b.names.Peers(app.Name), ComponentPeers, app.Name),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 PodSelector(b.sc, app),
			Ports: []corev1.ServicePort{
				{Name: "peers", Port: port, TargetPort: namedPort("peers"), Protocol: corev1.ProtocolTCP},
				{Name: "peers-udp", Port: port, TargetPort: namedPort("peers-udp"), Protocol: corev1.ProtocolUDP},
			},
		},
	}
}

// apiDiscovery reports whether app pods list their peers through the Kubernetes API.
func (b *builder) apiDiscovery() bool {
	return b.spec.Mode == sessionv1.ModeClustered && b.spec.Clustering.Discovery == sessionv1.DiscoveryKubernetesAPI
}

// peerServiceAccount, peerRole and peerRoleBinding let app pods that discover peers
// through the API read pods and EndpointSlices in their own namespace, nothing more.
func (b *builder) peerServiceAccount(app *sessionv1.AppSpec) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     typeMeta("v1", "ServiceAccount"),
		ObjectMeta:                   b.meta(b.names.App(app.Name), ComponentPeers, app.Name),
		AutomountServiceAccountToken: boolPtr(false),
	}
}

func (b *builder) peerRole(app *sessionv1.AppSpec) *rbacv1.Role {
	read := []string{"get", "list", "watch"}
	return &rbacv1.Role{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: b.meta(b.names.Peers(app.Name), ComponentPeers, app.Name),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		},
	}
}

func (b *builder) peerRoleBinding(app *sessionv1.AppSpec) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: b.meta(b.names.Peers(app.Name), ComponentPeers, app.Name),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: b.names.Peers(app.Name)},
		Subjects: []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Name: b.names.App(app.Name), Namespace: b.sc.Namespace,
		}},
	}
}
