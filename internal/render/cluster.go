package render

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// A sharded store (spec.store.shards) is a Redis Cluster: shards x replicas servers in one
// StatefulSet, ordinal k placed in shard k / replicas when the operator builds the cluster
// (internal/rediscluster), no Sentinel. It shares the Sentinel store's Secrets, users,
// ConfigMap, scripts, probes, claims, PDB and NetworkPolicy; what differs is here.

const (
	// ClusterBusPort is the Redis Cluster bus (gossip, failure reports, failover votes):
	// the client port + 10000, Redis' default, left unset in redis.conf so that servers
	// sharing one address in a test harness each get their own.
	ClusterBusPort = RedisPort + 10000
	// ClusterSlots is the number of hash slots Redis Cluster divides the keys into.
	ClusterSlots = 16384
	// SeedShards is how many shards' servers the apps get as seed nodes: every sharded
	// store has at least this many, so the seed list never changes with spec.store.shards.
	SeedShards = 3
)

// StoreServers is how many Redis servers a defaulted store spec asks for.
func StoreServers(st *sessionv1.StoreSpec) int32 {
	if st.Shards != nil {
		return *st.Shards * st.Replicas
	}
	return st.Replicas
}

// ClusterCommands are what a client of a Redis Cluster runs besides its data commands:
// reading the slot map (CLUSTER SLOTS, SHARDS, NODES: Redis puts them in no category an
// app user has) and following redirections (ASKING, READONLY, READWRITE are in
// @connection already).
var ClusterCommands = []string{"+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+cluster|myid", "+cluster|keyslot"}

// clusterConf is what a Redis Cluster server adds to redis.conf. The node table lives next
// to the data (on the claim with persistence), so a pod rescheduled with a new address
// comes back as the same node, in the same shard; it announces its stable DNS name, which
// clients are sent in redirections and CLUSTER SLOTS instead of a pod address.
func clusterConf(p *StoreParams) string {
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	line("cluster-enabled yes")
	line("cluster-config-file nodes.conf")
	line("cluster-node-timeout " + strconv.FormatInt(p.ClusterNodeTimeoutMillis, 10))
	line("cluster-preferred-endpoint-type hostname")
	// Sessions of the shards that are up stay readable and writable while one shard has
	// no primary; Redis' default would refuse every session the moment one slot is
	// uncovered.
	line("cluster-require-full-coverage no")
	return b.String()
}

// clusterStatefulSet runs the servers of a sharded store. It rolls pods one at a time
// (RollingUpdate): a stopping primary's preStop hands its slots to a replica with CLUSTER
// FAILOVER first, which loses no acknowledged write, and the next pod goes only once the
// previous one is Ready, a replica with its link up.
func (b *builder) clusterStatefulSet() *appsv1.StatefulSet {
	st := b.spec.Store
	n := b.names
	container := corev1.Container{
		Name:            "redis",
		Image:           st.Image,
		ImagePullPolicy: st.ImagePullPolicy,
		Command:         storeScript("cluster-boot.sh"),
		Env:             b.storeEnv("STORE_DOMAIN", n.StoreDomain()),
		Ports: []corev1.ContainerPort{
			{Name: "redis", ContainerPort: RedisPort, Protocol: corev1.ProtocolTCP},
			{Name: "cluster-bus", ContainerPort: ClusterBusPort, Protocol: corev1.ProtocolTCP},
		},
		StartupProbe:   execProbe(5, 4, 60, storeScript("redis-probe.sh", "live")...),
		LivenessProbe:  execProbe(10, 5, 6, storeScript("redis-probe.sh", "live")...),
		ReadinessProbe: execProbe(5, 4, 2, storeScript("redis-probe.sh", "ready")...),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: storeScript("cluster-prestop.sh")},
		}},
		Resources:       b.storeResources(),
		SecurityContext: restrictedContainer(true),
		VolumeMounts:    storeMounts(),
	}
	sts := b.storeSet(n.Store(), ComponentStore, "redis", n.StoreHeadless(), StoreServers(st), PreStopSeconds+15,
		[]string{"redis.conf", "common.sh", "cluster-boot.sh", "redis-probe.sh", "cluster-prestop.sh"}, container, st.Pod,
		appsv1.RollingUpdateStatefulSetStrategyType)
	b.storeData(sts)
	return sts
}

// ClusterSeeds are the servers the apps are given to find the cluster: those of the first
// SeedShards shards, which every sharded store keeps. A cluster client reads the rest of
// the slot map from any of them; listing every server instead would change the apps' env,
// and roll every app pod, whenever spec.store.shards changes.
func (n Names) ClusterSeeds(perShard int32) []string {
	return HostPorts(n.StoreHosts(SeedShards*perShard), RedisPort)
}

// clusterWiring is the wiring contract of a sharded store: the seed nodes under the names
// cluster clients read, and the app's user as for a Sentinel store. There is no single
// primary address (no SESSION_REDIS_ADDR, REDIS_HOST or REDIS_URL): a client that does not
// speak the cluster protocol would get MOVED for most sessions, and should fail to start
// instead.
func (b *builder) clusterWiring(app string) []corev1.EnvVar {
	seeds := strings.Join(b.names.ClusterSeeds(b.spec.Store.Replicas), ",")
	pw, user := b.appPasswordRef(app), b.appUsernameRef(app)
	return []corev1.EnvVar{
		{Name: "SESSION_REDIS_MODE", Value: "cluster"},
		{Name: "SESSION_REDIS_CLUSTER_NODES", Value: seeds},
		secretEnv("SESSION_REDIS_USERNAME", user),
		secretEnv("SESSION_REDIS_PASSWORD", pw),
		{Name: "SESSION_REDIS_WAIT_REPLICAS", Value: b.waitReplicas()},
		{Name: "REDIS_CLUSTER_NODES", Value: seeds},
		secretEnv("REDIS_USERNAME", user),
		secretEnv("REDIS_PASSWORD", pw),
		{Name: "SPRING_DATA_REDIS_CLUSTER_NODES", Value: seeds},
		secretEnv("SPRING_DATA_REDIS_USERNAME", user),
		secretEnv("SPRING_DATA_REDIS_PASSWORD", pw),
	}
}

// clusterBindingKeys are the binding Secret's coordinates of a sharded store, which every
// app pod gets projected.
var clusterBindingKeys = []string{"type", "provider", "host", "port", "cluster-nodes"}

// clusterBinding is the binding Secret's data for a sharded store: cluster-nodes instead
// of the Sentinel keys, and the headless Service (every server) as host.
func (b *builder) clusterBinding(data map[string][]byte) {
	n := b.names
	delete(data, "sentinel.master")
	delete(data, "sentinel.nodes")
	data["host"] = []byte(n.StoreDomain())
	data["cluster-nodes"] = []byte(strings.Join(n.ClusterSeeds(b.spec.Store.Replicas), ","))
}
