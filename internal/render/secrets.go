package render

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the Service Binding Secret.
const (
	// BindingSecretType is the Service Binding spec's Secret type for Redis.
	BindingSecretType = "servicebinding.io/redis"
	BindingProvider   = "session-operator"
	// AnnotationRotationHandled on the generated auth Secret is the last value of the
	// SessionCluster's rotate-password annotation the operator acted on.
	AnnotationRotationHandled = "session.sessionops.dev/rotation-handled"
)

// AppUsernameKey and AppPasswordKey are an app's keys in the auth Secret.
func AppUsernameKey(app string) string { return app + ".username" }
func AppPasswordKey(app string) string { return app + ".password" }

// appUsernameRef is where an app's Redis user name lives: the auth Secret, which exists
// with store.auth.existingSecret too, holding only the user names then.
func (b *builder) appUsernameRef(app string) *corev1.SecretKeySelector {
	return &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: b.names.AuthSecret()},
		Key:                  AppUsernameKey(app),
	}
}

// appPasswordRef is where an app's store password lives: its key in the generated auth
// Secret, or the user's Secret.
func (b *builder) appPasswordRef(app string) *corev1.SecretKeySelector {
	auth := b.spec.Store.Auth
	if auth.ExistingSecret != "" {
		return &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: auth.ExistingSecret},
			Key:                  auth.ExistingSecretKey,
		}
	}
	return &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: b.names.AuthSecret()},
		Key:                  AppPasswordKey(app),
	}
}

// operatorPasswordRef is the operator user's password, which the store pods' scripts use.
func (b *builder) operatorPasswordRef() *corev1.SecretKeySelector {
	return &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: b.names.UsersSecret()},
		Key:                  UserOperator,
	}
}

// authSecret holds each app's Redis user name and, unless the user brings the password,
// its generated password.
func (b *builder) authSecret() *corev1.Secret {
	data := map[string][]byte{}
	for _, app := range b.spec.Apps {
		data[AppUsernameKey(app.Name)] = []byte(AppUser(app.Name))
		if b.spec.Store.Auth.ExistingSecret == "" {
			data[AppPasswordKey(app.Name)] = []byte(b.in.AppPasswords[app.Name])
		}
	}
	s := &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: b.meta(b.names.AuthSecret(), ComponentAuth, "session-cluster"),
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if b.in.RotationHandled != "" {
		s.Annotations = map[string]string{AnnotationRotationHandled: b.in.RotationHandled}
	}
	return s
}

// bindingSecret follows the Service Binding spec, so any workload (or a binding
// controller) can mount the store's coordinates without knowing this operator. It
// carries the credentials of the first app's user.
func (b *builder) bindingSecret() *corev1.Secret {
	n := b.names
	sentinels := n.SentinelHosts(b.spec.Store.Sentinel.Replicas)
	app := b.spec.Apps[0].Name
	data := map[string][]byte{
		"type":            []byte("redis"),
		"provider":        []byte(BindingProvider),
		"host":            []byte(n.ServiceHost(n.Store())),
		"port":            []byte(strconv.Itoa(RedisPort)),
		"username":        []byte(AppUser(app)),
		"password":        []byte(b.in.AppPasswords[app]),
		"sentinel.master": []byte(n.MasterName()),
		"sentinel.nodes":  []byte(strings.Join(HostPorts(sentinels, SentinelPort), ",")),
	}
	if b.spec.Sharded() {
		b.clusterBinding(data)
	}
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: b.meta(n.Binding(), ComponentBinding, "session-cluster"),
		Type:       BindingSecretType,
		Data:       data,
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
