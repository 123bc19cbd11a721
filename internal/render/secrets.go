package render

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the auth Secret and of the Service Binding Secret.
const (
	PasswordKey = "password"
	// BindingSecretType is the Service Binding spec's Secret type for Redis.
	BindingSecretType = "servicebinding.io/redis"
	BindingProvider   = "session-operator"
)

// PasswordRef is where the store password lives: the generated auth Secret, or the user's.
func (b *builder) passwordRef() *corev1.SecretKeySelector {
	auth := b.spec.Store.Auth
	if auth.ExistingSecret != "" {
		return &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: auth.ExistingSecret},
			Key:                  auth.ExistingSecretKey,
		}
	}
	return &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: b.names.AuthSecret()},
		Key:                  PasswordKey,
	}
}

func (b *builder) authSecret() *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: b.meta(b.names.AuthSecret(), ComponentAuth, "session-cluster"),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{PasswordKey: []byte(b.in.Password)},
	}
}

// bindingSecret follows the Service Binding spec, so any workload (or a binding
// controller) can mount the store's coordinates without knowing this operator.
func (b *builder) bindingSecret() *corev1.Secret {
	n := b.names
	sentinels := n.SentinelHosts(b.spec.Store.Sentinel.Replicas)
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: b.meta(n.Binding(), ComponentBinding, "session-cluster"),
		Type:       BindingSecretType,
		Data: map[string][]byte{
			"type":            []byte("redis"),
			"provider":        []byte(BindingProvider),
			"host":            []byte(n.ServiceHost(n.Store())),
			"port":            []byte(strconv.Itoa(RedisPort)),
			"password":        []byte(b.in.Password),
			"sentinel.master": []byte(n.MasterName()),
			"sentinel.nodes":  []byte(strings.Join(HostPorts(sentinels, SentinelPort), ",")),
		},
	}
}

// HostPorts joins each host with port.
func HostPorts(hosts []string, port int) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h + ":" + strconv.Itoa(port)
	}
	return out
}
