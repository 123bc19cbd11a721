package render

import (
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// wiringEnv is the wiring contract every app container receives (DESIGN.md, "Wiring
// contract"): where sessions live, in this operator's names and in the names popular
// frameworks already read. The password is only ever a secretKeyRef.
func (b *builder) wiringEnv(app *sessionv1.AppSpec) []corev1.EnvVar {
	ttl := b.spec.Session.TTL.Duration
	env := []corev1.EnvVar{
		{Name: "SESSION_MODE", Value: string(b.spec.Mode)},
		{Name: "SESSION_TTL", Value: ttl.String()},
		{Name: "SESSION_TTL_SECONDS", Value: strconv.FormatInt(int64(ttl/time.Second), 10)},
		{Name: "PORT", Value: strconv.Itoa(int(app.Port))},
	}
	switch {
	case b.spec.Sharded():
		env = append(env, b.clusterWiring(app.Name)...)
	case b.spec.HasStore():
		env = append(env, b.storeWiring(app.Name)...)
	}
	if b.spec.Mode == sessionv1.ModeClustered {
		env = append(env, b.peerWiring(app)...)
	}
	return env
}

func (b *builder) storeWiring(app string) []corev1.EnvVar {
	st := b.spec.Store
	n := b.names
	sentinels := strings.Join(HostPorts(n.SentinelHosts(st.Sentinel.Replicas), SentinelPort), ",")
	primary := n.ServiceHost(n.Store())
	port := strconv.Itoa(RedisPort)
	pw, user := b.appPasswordRef(app), b.appUsernameRef(app)
	waitReplicas := b.waitReplicas()
	return []corev1.EnvVar{
		{Name: "SESSION_REDIS_SENTINEL_ADDRS", Value: sentinels},
		{Name: "SESSION_REDIS_SENTINEL_MASTER", Value: n.MasterName()},
		{Name: "SESSION_REDIS_ADDR", Value: primary + ":" + port},
		secretEnv("SESSION_REDIS_USERNAME", user),
		secretEnv("SESSION_REDIS_PASSWORD", pw),
		{Name: "SESSION_REDIS_WAIT_REPLICAS", Value: waitReplicas},
		{Name: "REDIS_HOST", Value: primary},
		{Name: "REDIS_PORT", Value: port},
		secretEnv("REDIS_USERNAME", user),
		secretEnv("REDIS_PASSWORD", pw),
		// $(REDIS_USERNAME) and $(REDIS_PASSWORD) are expanded by the kubelet from the
		// variables above: the pod spec holds the references, never the password.
		{Name: "REDIS_URL", Value: "redis://$(REDIS_USERNAME):$(REDIS_PASSWORD)@" + primary + ":" + port + "/0"},
		{Name: "SPRING_DATA_REDIS_SENTINEL_MASTER", Value: n.MasterName()},
		{Name: "SPRING_DATA_REDIS_SENTINEL_NODES", Value: sentinels},
		secretEnv("SPRING_DATA_REDIS_USERNAME", user),
		secretEnv("SPRING_DATA_REDIS_PASSWORD", pw),
		secretEnv("SPRING_DATA_REDIS_SENTINEL_USERNAME", user),
		secretEnv("SPRING_DATA_REDIS_SENTINEL_PASSWORD", pw),
	}
}

// waitReplicas is SESSION_REDIS_WAIT_REPLICAS: an acknowledged session must be on two
// servers (of its shard, with shards); a single server has nobody to ask.
func (b *builder) waitReplicas() string {
	if b.spec.Store.Replicas > 1 {
		return "1"
	}
	return "0"
}

func (b *builder) peerWiring(app *sessionv1.AppSpec) []corev1.EnvVar {
	n := b.names
	peers := n.ServiceHost(n.Peers(app.Name))
	env := []corev1.EnvVar{
		{Name: "SESSION_PEERS_DNS", Value: peers},
		{Name: "SESSION_PEERS_PORT", Value: strconv.Itoa(int(b.spec.Clustering.Port))},
		fieldEnv("KUBERNETES_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_IP", "status.podIP"),
		// Tomcat's DNSMembershipProvider, JGroups' DNS_PING and Hazelcast's DNS join.
		{Name: "DNS_MEMBERSHIP_SERVICE_NAME", Value: peers},
		{Name: "JGROUPS_DNS_QUERY", Value: peers},
		{Name: "HZ_NETWORK_JOIN_KUBERNETES_SERVICEDNS", Value: peers},
	}
	if b.spec.Clustering.Discovery == sessionv1.DiscoveryKubernetesAPI {
		env = append(env, corev1.EnvVar{Name: "KUBERNETES_LABELS", Value: selectorString(PodSelector(b.sc, app))})
	}
	return env
}

// appEnv is the env of a created app's container: the wiring, then the template
// container's env and the app's env, a user variable replacing an injected one.
func (b *builder) appEnv(app *sessionv1.AppSpec) []corev1.EnvVar {
	var user []corev1.EnvVar
	if t := app.Template; t != nil && t.Spec != nil {
		if i := slices.IndexFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AppContainer }); i >= 0 {
			user = slices.Clone(t.Spec.Containers[i].Env)
		}
	}
	user = append(user, app.Env...)
	return overlayEnv(b.wiringEnv(app), user)
}

// wiringHash changes whenever what an app pod reads from its pod spec at start changes.
// A new password shows in the password-version annotation instead (podPasswordVersion).
func (b *builder) wiringHash(app *sessionv1.AppSpec) string {
	return Hash(b.appEnv(app))
}

// podPasswordVersion is the password version an app's pods start with: the one the
// operator has made every server accept, else the current password's.
func (b *builder) podPasswordVersion(app string) string {
	if v := b.in.PodPasswordVersions[app]; v != "" {
		return v
	}
	return PasswordVersion(PasswordHash(b.in.AppPasswords[app]))
}

func selectorString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}
