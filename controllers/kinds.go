package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// childKind is one kind of object a SessionCluster owns: watched, cached by label, and
// pruned when the spec stops asking for it.
type childKind struct {
	obj  client.Object
	list client.ObjectList
}

// childKinds lists every kind the operator creates. The Gateway API's HTTPRoute joins
// them only when its CRD is installed (see routing).
func childKinds() []childKind {
	return []childKind{
		{&corev1.Secret{}, &corev1.SecretList{}},
		{&corev1.ConfigMap{}, &corev1.ConfigMapList{}},
		{&corev1.Service{}, &corev1.ServiceList{}},
		{&corev1.ServiceAccount{}, &corev1.ServiceAccountList{}},
		{&appsv1.StatefulSet{}, &appsv1.StatefulSetList{}},
		{&appsv1.Deployment{}, &appsv1.DeploymentList{}},
		{&policyv1.PodDisruptionBudget{}, &policyv1.PodDisruptionBudgetList{}},
		{&networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicyList{}},
		{&networkingv1.Ingress{}, &networkingv1.IngressList{}},
		{&rbacv1.Role{}, &rbacv1.RoleList{}},
		{&rbacv1.RoleBinding{}, &rbacv1.RoleBindingList{}},
	}
}

// ChildObjects are the kinds of which the manager's cache holds only the operator's
// labelled objects (see CacheOptions).
func ChildObjects() []client.Object {
	var out []client.Object
	for _, k := range childKinds() {
		out = append(out, k.obj)
	}
	return out
}
