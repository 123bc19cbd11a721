package render

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// storeNetworkPolicy admits to Redis and Sentinel only this SessionCluster's own pods
// (apps, servers, Sentinels), pods labelled as its clients, and the operator; with shards,
// also the Redis Cluster bus, from the servers only.
func (b *builder) storeNetworkPolicy() *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := func(p int32) networkingv1.NetworkPolicyPort {
		v := intstr.FromInt32(p)
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &v}
	}
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
		ObjectMeta: b.meta(b.names.Store(), ComponentNetwork, "session-cluster"),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{
				MatchLabels: InstanceSelector(b.sc),
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: LabelComponent, Operator: metav1.LabelSelectorOpIn,
					Values: []string{ComponentStore, ComponentSentinel},
				}},
			},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{port(RedisPort), port(SentinelPort)},
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: InstanceSelector(b.sc)}},
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelClient: b.sc.Name}}},
					{
						NamespaceSelector: b.operatorNamespaceSelector(),
						PodSelector:       &metav1.LabelSelector{MatchLabels: b.opts.OperatorPodLabels},
					},
				},
			}},
		},
	}
	if b.spec.Sharded() {
		// No Sentinel port; the cluster bus only between the servers themselves.
		spec := &np.Spec
		spec.PodSelector.MatchExpressions[0].Values = []string{ComponentStore}
		spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port(RedisPort)}
		spec.Ingress = append(spec.Ingress, networkingv1.NetworkPolicyIngressRule{
			Ports: []networkingv1.NetworkPolicyPort{port(ClusterBusPort)},
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: Selector(b.sc, ComponentStore)}}},
		})
	}
	return np
}

// operatorNamespaceSelector selects the operator's namespace by the name label every
// namespace carries; without it any namespace's pod could pose as the operator by its labels.
func (b *builder) operatorNamespaceSelector() *metav1.LabelSelector {
	if b.opts.OperatorNamespace == "" {
		return &metav1.LabelSelector{}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: b.opts.OperatorNamespace}}
}

func (b *builder) pdb(name, component, appName string, selector map[string]string) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: b.meta(name, component, appName),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: selector},
		},
	}
}

// storePDB lets a drain take one server at a time, so a replica is always left to promote.
func (b *builder) storePDB() *policyv1.PodDisruptionBudget {
	return b.pdb(b.names.Store(), ComponentStore, "redis", Selector(b.sc, ComponentStore))
}

// sentinelPDB lets a drain take one Sentinel at a time, keeping the majority a failover needs.
func (b *builder) sentinelPDB() *policyv1.PodDisruptionBudget {
	return b.pdb(b.names.Sentinel(), ComponentSentinel, "redis-sentinel", Selector(b.sc, ComponentSentinel))
}
