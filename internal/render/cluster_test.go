package render

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

func sharded(shards, replicas int32, mutate ...func(*sessionv1.SessionClusterSpec)) *sessionv1.SessionCluster {
	return cluster(sessionv1.ModeStore, append([]func(*sessionv1.SessionClusterSpec){func(s *sessionv1.SessionClusterSpec) {
		s.Store.Shards, s.Store.Replicas = ptr.To(shards), replicas
	}}, mutate...)...)
}

func TestShardedStoreTopology(t *testing.T) {
	d := mustRender(t, sharded(3, 2, func(s *sessionv1.SessionClusterSpec) {
		s.Store.ClusterNodeTimeout = &metav1.Duration{Duration: 3500 * 1e6}
		s.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}
	}))
	sts := find[*appsv1.StatefulSet](t, d, "shop-store")
	if *sts.Spec.Replicas != 6 || sts.Spec.ServiceName != "shop-store-headless" || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("servers: replicas %d, service %s, %s", *sts.Spec.Replicas, sts.Spec.ServiceName, sts.Spec.PodManagementPolicy)
	}
	if sts.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		t.Errorf("update strategy %s: the preStop hands a primary's shard over, so the pods may roll one by one", sts.Spec.UpdateStrategy.Type)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != ClaimTemplateName {
		t.Errorf("claims %+v: nodes.conf must live on the claim", sts.Spec.VolumeClaimTemplates)
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Contains(c.Command, ConfigDir+"/cluster-boot.sh") || c.Lifecycle == nil || !slices.Contains(c.Lifecycle.PreStop.Exec.Command, ConfigDir+"/cluster-prestop.sh") {
		t.Errorf("command %v, preStop %+v", c.Command, c.Lifecycle)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == ClusterBusPort }) {
		t.Errorf("no cluster bus port among %+v", c.Ports)
	}
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 ||
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("servers not spread across nodes: %+v", pod.Affinity)
	}
	if env := envOf(c); env["REDISCLI_AUTH"].ValueFrom == nil || env["REDISCLI_AUTH"].ValueFrom.SecretKeyRef.Name != "shop-store-users" {
		t.Errorf("REDISCLI_AUTH %+v", env["REDISCLI_AUTH"])
	}

	cm := find[*corev1.ConfigMap](t, d, "shop-store-config")
	conf := cm.Data["redis.conf"]
	for _, want := range []string{"cluster-enabled yes\n", "cluster-config-file nodes.conf\n", "cluster-node-timeout 3500\n",
		"cluster-preferred-endpoint-type hostname\n", "cluster-require-full-coverage no\n", "appendonly yes\n", "maxmemory 268435456\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("redis.conf lacks %q:\n%s", want, conf)
		}
	}
	boot := cm.Data["cluster-boot.sh"]
	for _, want := range []string{"cluster-announce-hostname $MY_HOST", "wait_for_takeover\n", `MY_HOST="$POD_NAME.$STORE_DOMAIN"`, "masteruser replication", "masterauth", `"$USERS_DIR/users.acl"`} {
		if !strings.Contains(boot, want) {
			t.Errorf("cluster-boot.sh lacks %q", want)
		}
	}
	for _, s := range clusterScriptNames {
		if cm.Data[s] == "" {
			t.Errorf("config map lacks script %s", s)
		}
	}
	for _, gone := range []string{"sentinel.conf", "sentinel-master.conf", "redis-boot.sh", "sentinel-boot.sh"} {
		if _, ok := cm.Data[gone]; ok {
			t.Errorf("config map of a sharded store carries %s", gone)
		}
	}
	if got := strings.Fields(cm.Data[HostsFileStore]); len(got) != 6 || got[5] != "shop-store-5.shop-store-headless.web.svc.cluster.local" {
		t.Errorf("%s %v", HostsFileStore, got)
	}

	headless := find[*corev1.Service](t, d, "shop-store-headless")
	if !headless.Spec.PublishNotReadyAddresses || len(headless.Spec.Ports) != 2 || headless.Spec.Ports[1].Port != ClusterBusPort {
		t.Errorf("headless service %+v", headless.Spec)
	}
	for _, o := range d.Objects {
		switch {
		case o.GetName() == "shop-store" && !isKind[*appsv1.StatefulSet](o) && !isKind[*policyv1.PodDisruptionBudget](o) && !isKind[*networkingv1.NetworkPolicy](o):
			t.Errorf("a sharded store has no primary Service, found %T %s", o, o.GetName())
		case strings.HasPrefix(o.GetName(), "shop-sentinel"):
			t.Errorf("a sharded store runs no Sentinel, found %T %s", o, o.GetName())
		}
	}
	find[*policyv1.PodDisruptionBudget](t, d, "shop-store")
}

func isKind[T any](o any) bool { _, ok := o.(T); return ok }

func TestShardedStoreNetworkPolicyAdmitsTheBusFromServersOnly(t *testing.T) {
	np := find[*networkingv1.NetworkPolicy](t, mustRender(t, sharded(3, 2)), "shop-store")
	if got := np.Spec.PodSelector.MatchExpressions[0].Values; !slices.Equal(got, []string{ComponentStore}) {
		t.Errorf("policy selects %v", got)
	}
	if len(np.Spec.Ingress) != 2 {
		t.Fatalf("ingress rules %+v", np.Spec.Ingress)
	}
	clients, bus := np.Spec.Ingress[0], np.Spec.Ingress[1]
	if len(clients.Ports) != 1 || clients.Ports[0].Port.IntVal != RedisPort || len(clients.From) != 3 {
		t.Errorf("client rule %+v", clients)
	}
	if len(bus.Ports) != 1 || bus.Ports[0].Port.IntVal != ClusterBusPort || len(bus.From) != 1 ||
		bus.From[0].PodSelector.MatchLabels[LabelComponent] != ComponentStore || bus.From[0].NamespaceSelector != nil {
		t.Errorf("bus rule %+v", bus)
	}
}

func TestShardedStoreWiring(t *testing.T) {
	d := mustRender(t, sharded(4, 2, func(s *sessionv1.SessionClusterSpec) { s.Apps[0].KeyPrefix = "session:" }))
	c := find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Spec.Containers[0]
	env := envOf(c)
	seeds := "shop-store-0.shop-store-headless.web.svc.cluster.local:6379"
	if env["SESSION_REDIS_MODE"].Value != "cluster" {
		t.Errorf("SESSION_REDIS_MODE %q", env["SESSION_REDIS_MODE"].Value)
	}
	for _, k := range []string{"SESSION_REDIS_CLUSTER_NODES", "REDIS_CLUSTER_NODES", "SPRING_DATA_REDIS_CLUSTER_NODES"} {
		nodes := strings.Split(env[k].Value, ",")
		if len(nodes) != 6 || nodes[0] != seeds || nodes[5] != "shop-store-5.shop-store-headless.web.svc.cluster.local:6379" {
			t.Errorf("%s = %q: want the servers of the first 3 shards", k, env[k].Value)
		}
	}
	for _, k := range []string{"SESSION_REDIS_USERNAME", "SESSION_REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_PASSWORD", "SPRING_DATA_REDIS_USERNAME", "SPRING_DATA_REDIS_PASSWORD"} {
		if v := env[k]; v.Value != "" || v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil || v.ValueFrom.SecretKeyRef.Name != "shop-store-auth" {
			t.Errorf("%s is not a secretKeyRef to the auth Secret: %+v", k, v)
		}
	}
	if env["SESSION_REDIS_WAIT_REPLICAS"].Value != "1" {
		t.Errorf("SESSION_REDIS_WAIT_REPLICAS %q", env["SESSION_REDIS_WAIT_REPLICAS"].Value)
	}
	for _, k := range []string{"SESSION_REDIS_ADDR", "SESSION_REDIS_SENTINEL_ADDRS", "REDIS_URL", "REDIS_HOST", "SPRING_DATA_REDIS_SENTINEL_NODES"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s wired for a sharded store: a client that follows it gets MOVED for most sessions", k)
		}
	}

	// Resharding keeps the seeds, so it rolls no app pod.
	d5 := mustRender(t, sharded(5, 2, func(s *sessionv1.SessionClusterSpec) { s.Apps[0].KeyPrefix = "session:" }))
	a4 := find[*appsv1.Deployment](t, d, "shop-web").Spec.Template
	a5 := find[*appsv1.Deployment](t, d5, "shop-web").Spec.Template
	if a4.Annotations[AnnotationWiringHash] != a5.Annotations[AnnotationWiringHash] || !slices.EqualFunc(a4.Spec.Containers[0].Env, a5.Spec.Containers[0].Env, func(a, b corev1.EnvVar) bool { return a.String() == b.String() }) {
		t.Error("changing spec.store.shards changes the apps' pod template")
	}
	if s4, s5 := find[*appsv1.StatefulSet](t, d, "shop-store"), find[*appsv1.StatefulSet](t, d5, "shop-store"); *s5.Spec.Replicas != 10 ||
		s4.Spec.Template.Annotations[AnnotationConfigHash] != s5.Spec.Template.Annotations[AnnotationConfigHash] {
		t.Errorf("resharding 4 -> 5: %d servers, config hash changed %v: a reshard must roll no server", *s5.Spec.Replicas,
			s4.Spec.Template.Annotations[AnnotationConfigHash] != s5.Spec.Template.Annotations[AnnotationConfigHash])
	}

	bind := find[*corev1.Secret](t, d, "shop-session")
	if got := string(bind.Data["cluster-nodes"]); !strings.HasPrefix(got, seeds+",") {
		t.Errorf("binding cluster-nodes %q", got)
	}
	if _, ok := bind.Data["sentinel.nodes"]; ok {
		t.Error("binding Secret of a sharded store names Sentinels")
	}
	if string(bind.Data["host"]) != "shop-store-headless.web.svc.cluster.local" || string(bind.Data["password"]) != testPassword {
		t.Errorf("binding host %q", bind.Data["host"])
	}
}

func TestShardedStoreUsersReadTheSlotMap(t *testing.T) {
	d := mustRender(t, sharded(3, 2, func(s *sessionv1.SessionClusterSpec) { s.Apps[0].KeyPrefix = "session:" }))
	var app ACLUser
	for _, u := range d.Users.Servers {
		if u.Name == AppUser("web") {
			app = u
		}
	}
	for _, want := range []string{"~session:*", "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+@connection", "-@admin"} {
		if !slices.Contains(app.Rules, want) {
			t.Errorf("app user rules lack %s: %v", want, app.Rules)
		}
	}
	// A Sentinel store's app user does not get them.
	for _, u := range mustRender(t, cluster(sessionv1.ModeStore)).Users.Servers {
		if u.Name == AppUser("web") && slices.Contains(u.Rules, "+cluster|slots") {
			t.Error("a Sentinel store's app user may read a cluster slot map")
		}
	}
}

func TestShardedStoreDefaultsItsNodeTimeout(t *testing.T) {
	cm := find[*corev1.ConfigMap](t, mustRender(t, sharded(3, 3)), "shop-store-config")
	if !strings.Contains(cm.Data["redis.conf"], "cluster-node-timeout 5000\n") || !strings.Contains(cm.Data["redis.conf"], "min-replicas-to-write 1\n") {
		t.Errorf("redis.conf:\n%s", cm.Data["redis.conf"])
	}
}

// TestBindingProjectionNamesOnlyKeysTheSecretHas: a projected key the binding Secret lacks
// keeps every app pod in ContainerCreating (seen on the local cluster with a sharded store).
func TestBindingProjectionNamesOnlyKeysTheSecretHas(t *testing.T) {
	for name, sc := range map[string]*sessionv1.SessionCluster{"sentinel": cluster(sessionv1.ModeStore), "sharded": sharded(3, 2)} {
		d := mustRender(t, sc)
		bind := find[*corev1.Secret](t, d, "shop-session")
		pod := find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Spec
		found := false
		for _, v := range pod.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret == nil || src.Secret.Name != "shop-session" {
					continue
				}
				found = true
				for _, it := range src.Secret.Items {
					if _, ok := bind.Data[it.Key]; !ok {
						t.Errorf("%s: app pods project key %s, which the binding Secret lacks", name, it.Key)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no binding projection", name)
		}
	}
	if !slices.Contains(clusterBindingKeys, "cluster-nodes") {
		t.Error("a sharded store's apps do not get cluster-nodes")
	}
}
