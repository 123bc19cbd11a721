package render

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

const testPassword = "s3cretPassw0rdThatMustNotLeak"

func cluster(mode sessionv1.SessionMode, mutate ...func(*sessionv1.SessionClusterSpec)) *sessionv1.SessionCluster {
	sc := &sessionv1.SessionCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "web", UID: types.UID("uid-1"), Generation: 1},
		Spec: sessionv1.SessionClusterSpec{
			Mode: mode,
			Apps: []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4"}},
		},
	}
	switch mode {
	case sessionv1.ModeStore:
		sc.Spec.Store = &sessionv1.StoreSpec{}
	case sessionv1.ModeSticky:
		sc.Spec.Sticky = &sessionv1.StickySpec{}
	}
	for _, m := range mutate {
		m(&sc.Spec)
	}
	return sc
}

// Internal passwords of the tests; like testPassword, none may leave a Secret.
var testInternal = InternalPasswords{Operator: "opPassw0rdNeverSeen1", Replication: "replPassw0rdNeverSeen2", Sentinel: "sentPassw0rdNeverSeen3"}

// inputsFor gives every app of sc the password pw.
func inputsFor(sc *sessionv1.SessionCluster, pw string) Inputs {
	in := Inputs{AppPasswords: map[string]string{}, Internal: testInternal}
	for _, a := range sc.Spec.Apps {
		in.AppPasswords[a.Name] = pw
	}
	return in
}

func mustRender(t *testing.T, sc *sessionv1.SessionCluster) *Desired {
	t.Helper()
	d, err := Render(sc, Options{}, inputsFor(sc, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func find[T client.Object](t *testing.T, d *Desired, name string) T {
	t.Helper()
	for _, o := range d.Objects {
		if v, ok := o.(T); ok && o.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %s among %s", zero, name, names(d))
	return zero
}

func names(d *Desired) string {
	var out []string
	for _, o := range d.Objects {
		out = append(out, fmt.Sprintf("%s/%s", o.GetObjectKind().GroupVersionKind().Kind, o.GetName()))
	}
	return strings.Join(out, " ")
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

// TestEveryChildIsLabelledAndOwned covers every mode and option combination.
func TestEveryChildIsLabelledAndOwned(t *testing.T) {
	variants := map[string]*sessionv1.SessionCluster{
		"store": cluster(sessionv1.ModeStore),
		"store-persist": cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
			s.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}
		}),
		"store-user-pw":  cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Auth.ExistingSecret = "mine" }),
		"store-one-node": cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Replicas = 1 }),
		"store-two-apps": cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
			s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "api", Image: "example/api:2", Path: "/api"})
		}),
		"sticky":    cluster(sessionv1.ModeSticky),
		"hybrid":    cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) { s.Store = &sessionv1.StoreSpec{} }),
		"clustered": cluster(sessionv1.ModeClustered),
		"sharded":   sharded(3, 2),
		"hybrid-sharded": cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) {
			s.Store = &sessionv1.StoreSpec{Shards: ptr.To[int32](4), Persistence: &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}}
		}),
	}
	required := []string{LabelName, LabelInstance, LabelComponent, LabelPartOf, LabelManagedBy}
	for name, sc := range variants {
		t.Run(name, func(t *testing.T) {
			d := mustRender(t, sc)
			if len(d.Objects) == 0 {
				t.Fatal("no objects")
			}
			seen := map[string]bool{}
			for _, o := range d.Objects {
				kind := o.GetObjectKind().GroupVersionKind().Kind
				if kind == "" {
					t.Errorf("%s has no kind", o.GetName())
				}
				key := kind + "/" + o.GetName()
				if seen[key] {
					t.Errorf("%s rendered twice", key)
				}
				seen[key] = true
				for _, l := range required {
					if o.GetLabels()[l] == "" {
						t.Errorf("%s lacks label %s", key, l)
					}
				}
				if o.GetLabels()[LabelInstance] != "shop" || o.GetLabels()[LabelManagedBy] != ManagedBy {
					t.Errorf("%s labels %v", key, o.GetLabels())
				}
				refs := o.GetOwnerReferences()
				if len(refs) != 1 || refs[0].UID != "uid-1" || !ptr.Deref(refs[0].Controller, false) || refs[0].Kind != "SessionCluster" {
					t.Errorf("%s owner references %+v", key, refs)
				}
				if o.GetNamespace() != "web" {
					t.Errorf("%s namespace %q", key, o.GetNamespace())
				}
				if len(o.GetName()) > 63 {
					t.Errorf("%s name longer than a DNS label", key)
				}
			}
		})
	}
}

// TestPasswordOnlyInSecrets scans every non-Secret object for the password.
func TestPasswordOnlyInSecrets(t *testing.T) {
	for _, sc := range []*sessionv1.SessionCluster{
		cluster(sessionv1.ModeStore),
		cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) { s.Store = &sessionv1.StoreSpec{} }),
		sharded(3, 2),
	} {
		d := mustRender(t, sc)
		secrets := 0
		for _, o := range d.Objects {
			raw, _ := json.Marshal(o)
			if _, ok := o.(*corev1.Secret); ok {
				secrets++
				continue
			}
			for _, pw := range []string{testPassword, testInternal.Operator, testInternal.Replication, testInternal.Sentinel} {
				if strings.Contains(string(raw), pw) {
					t.Errorf("%T %s holds a password", o, o.GetName())
				}
			}
		}
		if secrets != 3 {
			t.Errorf("want auth, users and binding Secrets, got %d Secrets", secrets)
		}
	}
}

func TestStoreTopology(t *testing.T) {
	d := mustRender(t, cluster(sessionv1.ModeStore))
	sts := find[*appsv1.StatefulSet](t, d, "shop-store")
	if *sts.Spec.Replicas != 3 || sts.Spec.ServiceName != "shop-store-headless" {
		t.Errorf("store statefulset replicas %d service %s", *sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("pod management %s", sts.Spec.PodManagementPolicy)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	env := envOf(c)
	cm := find[*corev1.ConfigMap](t, d, "shop-store-config")
	if got := cm.Data[HostsFileStore]; got != "shop-store-0.shop-store-headless.web.svc.cluster.local shop-store-1.shop-store-headless.web.svc.cluster.local shop-store-2.shop-store-headless.web.svc.cluster.local\n" {
		t.Errorf("%s %q", HostsFileStore, got)
	}
	if _, ok := env["STORE_HOSTS"]; ok {
		t.Error("STORE_HOSTS in the env: a scale would roll every pod")
	}
	if sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		t.Errorf("store update strategy %s, want OnDelete (the operator rolls the servers)", sts.Spec.UpdateStrategy.Type)
	}
	if env["REDISCLI_AUTH"].ValueFrom == nil || env["REDISCLI_AUTH"].ValueFrom.SecretKeyRef.Name != "shop-store-users" ||
		env["REDISCLI_AUTH"].ValueFrom.SecretKeyRef.Key != UserOperator || env["REDISCLI_USER"].Value != UserOperator {
		t.Errorf("REDISCLI_AUTH %+v", env["REDISCLI_AUTH"])
	}
	if c.ReadinessProbe == nil || !slices.Contains(c.ReadinessProbe.Exec.Command, "ready") {
		t.Errorf("readiness probe %+v", c.ReadinessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop handover")
	}
	primary := find[*corev1.Service](t, d, "shop-store")
	if primary.Spec.Selector[LabelRole] != RolePrimary {
		t.Errorf("primary service selector %v", primary.Spec.Selector)
	}
	headless := find[*corev1.Service](t, d, "shop-store-headless")
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless service %+v", headless.Spec)
	}
	sent := find[*appsv1.StatefulSet](t, d, "shop-sentinel")
	if *sent.Spec.Replicas != 3 {
		t.Errorf("sentinels %d", *sent.Spec.Replicas)
	}
	cm = find[*corev1.ConfigMap](t, d, "shop-store-config")
	conf := cm.Data["redis.conf"]
	for _, want := range []string{"maxmemory 268435456", "maxmemory-policy volatile-lru", "min-replicas-to-write 1", `save ""`} {
		if !strings.Contains(conf, want) {
			t.Errorf("redis.conf lacks %q:\n%s", want, conf)
		}
	}
	if !strings.Contains(cm.Data["sentinel.conf"], "resolve-hostnames yes") || !strings.Contains(cm.Data["sentinel.conf"], "announce-hostnames yes") {
		t.Errorf("sentinel.conf does not use host names:\n%s", cm.Data["sentinel.conf"])
	}
	if !strings.Contains(cm.Data["sentinel-master.conf"], "down-after-milliseconds shop 5000") {
		t.Errorf("sentinel-master.conf:\n%s", cm.Data["sentinel-master.conf"])
	}
	for _, s := range scriptNames {
		if cm.Data[s] == "" {
			t.Errorf("config map lacks script %s", s)
		}
	}
	find[*corev1.Secret](t, d, "shop-session")
	find[*corev1.Secret](t, d, "shop-store-auth")
}

func TestOneServerStoreNeedsNoReplicaToWrite(t *testing.T) {
	d := mustRender(t, cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Replicas = 1 }))
	cm := find[*corev1.ConfigMap](t, d, "shop-store-config")
	if !strings.Contains(cm.Data["redis.conf"], "min-replicas-to-write 0") {
		t.Errorf("a single server must accept writes:\n%s", cm.Data["redis.conf"])
	}
	app := find[*appsv1.Deployment](t, d, "shop-web")
	if got := envOf(app.Spec.Template.Spec.Containers[0])["SESSION_REDIS_WAIT_REPLICAS"].Value; got != "0" {
		t.Errorf("SESSION_REDIS_WAIT_REPLICAS %q with one server", got)
	}
}

func TestPersistence(t *testing.T) {
	for _, del := range []bool{false, true} {
		d := mustRender(t, cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
			s.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("2Gi"), StorageClassName: ptr.To("fast"), DeleteClaim: del}
		}))
		sts := find[*appsv1.StatefulSet](t, d, "shop-store")
		if len(sts.Spec.VolumeClaimTemplates) != 1 || *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != "fast" {
			t.Fatalf("claim templates %+v", sts.Spec.VolumeClaimTemplates)
		}
		want := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		if del {
			want = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}
		if sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != want {
			t.Errorf("deleteClaim=%v: whenDeleted %s", del, sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted)
		}
		if !strings.Contains(find[*corev1.ConfigMap](t, d, "shop-store-config").Data["redis.conf"], "appendonly yes") {
			t.Error("persistent store without AOF")
		}
	}
}

// TestRestrictedPodSecurity checks every pod template against the restricted Pod Security
// Standard's rules.
func TestRestrictedPodSecurity(t *testing.T) {
	for _, sc := range []*sessionv1.SessionCluster{cluster(sessionv1.ModeStore), cluster(sessionv1.ModeClustered), cluster(sessionv1.ModeSticky)} {
		for _, o := range mustRender(t, sc).Objects {
			var pod *corev1.PodSpec
			switch w := o.(type) {
			case *appsv1.StatefulSet:
				pod = &w.Spec.Template.Spec
			case *appsv1.Deployment:
				pod = &w.Spec.Template.Spec
			default:
				continue
			}
			psc := pod.SecurityContext
			if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s pod security context %+v", o.GetName(), psc)
			}
			for _, c := range pod.Containers {
				csc := c.SecurityContext
				if csc == nil || ptr.Deref(csc.AllowPrivilegeEscalation, true) || csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("%s/%s container security context %+v", o.GetName(), c.Name, csc)
				}
			}
			for _, v := range pod.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s uses a hostPath volume", o.GetName())
				}
			}
		}
	}
}

func TestAppWiring(t *testing.T) {
	sc := cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
		s.Apps[0].Env = []corev1.EnvVar{{Name: "REDIS_HOST", Value: "override"}, {Name: "EXTRA", Value: "1"}}
	})
	d := mustRender(t, sc)
	app := find[*appsv1.Deployment](t, d, "shop-web")
	c := app.Spec.Template.Spec.Containers[0]
	env := envOf(c)
	want := map[string]string{
		"SESSION_MODE":                      "Store",
		"SESSION_TTL":                       "30m0s",
		"SESSION_TTL_SECONDS":               "1800",
		"SESSION_REDIS_SENTINEL_MASTER":     "shop",
		"SESSION_REDIS_SENTINEL_ADDRS":      "shop-sentinel-0.shop-sentinel.web.svc.cluster.local:26379,shop-sentinel-1.shop-sentinel.web.svc.cluster.local:26379,shop-sentinel-2.shop-sentinel.web.svc.cluster.local:26379",
		"SESSION_REDIS_ADDR":                "shop-store.web.svc.cluster.local:6379",
		"SESSION_REDIS_WAIT_REPLICAS":       "1",
		"REDIS_PORT":                        "6379",
		"REDIS_URL":                         "redis://$(REDIS_USERNAME):$(REDIS_PASSWORD)@shop-store.web.svc.cluster.local:6379/0",
		"SPRING_DATA_REDIS_SENTINEL_MASTER": "shop",
		"SPRING_DATA_REDIS_SENTINEL_NODES":  "shop-sentinel-0.shop-sentinel.web.svc.cluster.local:26379,shop-sentinel-1.shop-sentinel.web.svc.cluster.local:26379,shop-sentinel-2.shop-sentinel.web.svc.cluster.local:26379",
		"REDIS_HOST":                        "override",
		"EXTRA":                             "1",
	}
	for k, v := range want {
		if env[k].Value != v {
			t.Errorf("%s = %q, want %q", k, env[k].Value, v)
		}
	}
	for _, k := range []string{"SESSION_REDIS_PASSWORD", "REDIS_PASSWORD", "SPRING_DATA_REDIS_PASSWORD", "SPRING_DATA_REDIS_SENTINEL_PASSWORD"} {
		if env[k].ValueFrom == nil || env[k].ValueFrom.SecretKeyRef == nil || env[k].Value != "" ||
			*env[k].ValueFrom.SecretKeyRef != (corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-store-auth"}, Key: "web.password"}) {
			t.Errorf("%s must be a secretKeyRef to shop-store-auth web.password: %+v", k, env[k])
		}
	}
	for _, k := range []string{"SESSION_REDIS_USERNAME", "REDIS_USERNAME", "SPRING_DATA_REDIS_USERNAME", "SPRING_DATA_REDIS_SENTINEL_USERNAME"} {
		if env[k].ValueFrom == nil || env[k].ValueFrom.SecretKeyRef == nil ||
			*env[k].ValueFrom.SecretKeyRef != (corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-store-auth"}, Key: "web.username"}) {
			t.Errorf("%s must be a secretKeyRef to shop-store-auth web.username: %+v", k, env[k])
		}
	}
	auth := find[*corev1.Secret](t, d, "shop-store-auth")
	if string(auth.Data["web.username"]) != "app-web" || string(auth.Data["web.password"]) != testPassword {
		t.Errorf("auth secret keys %v", slices.Sorted(maps.Keys(auth.Data)))
	}
	binding := find[*corev1.Secret](t, d, "shop-session")
	if string(binding.Data["username"]) != "app-web" || string(binding.Data["password"]) != testPassword {
		t.Error("binding secret lacks the app's username and password")
	}
	count := 0
	for _, e := range c.Env {
		if e.Name == "REDIS_HOST" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("REDIS_HOST appears %d times; the user's value must replace the injected one", count)
	}
	if c.Env[len(c.Env)-1].Name != "EXTRA" {
		t.Error("user env must come after the wiring")
	}
	if app.Spec.Template.Annotations[AnnotationWiringHash] == "" {
		t.Error("no wiring hash")
	}
}

func TestWiringHashRollsPods(t *testing.T) {
	hash := func(sc *sessionv1.SessionCluster, in Inputs) string {
		d, err := Render(sc, Options{}, in)
		if err != nil {
			t.Fatal(err)
		}
		return find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Annotations[AnnotationWiringHash]
	}
	in := inputsFor(cluster(sessionv1.ModeStore), testPassword)
	base := hash(cluster(sessionv1.ModeStore), in)
	if base != hash(cluster(sessionv1.ModeStore), in) {
		t.Fatal("wiring hash is not stable")
	}
	changes := map[string]string{
		"ttl":       hash(cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Session.TTL = &metav1.Duration{Duration: 3600e9} }), in),
		"sentinels": hash(cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Sentinel.Replicas = 5 }), in),
	}
	for what, h := range changes {
		if h == base {
			t.Errorf("changing the %s does not change the wiring hash", what)
		}
	}
}

func TestConfigHashRollsStore(t *testing.T) {
	h := func(sc *sessionv1.SessionCluster) (string, string) {
		d := mustRender(t, sc)
		return find[*appsv1.StatefulSet](t, d, "shop-store").Spec.Template.Annotations[AnnotationConfigHash],
			find[*appsv1.StatefulSet](t, d, "shop-sentinel").Spec.Template.Annotations[AnnotationConfigHash]
	}
	r1, s1 := h(cluster(sessionv1.ModeStore))
	r2, s2 := h(cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { q := resource.MustParse("512Mi"); s.Store.MaxMemory = &q }))
	if r1 == r2 {
		t.Error("maxMemory change does not roll the servers")
	}
	if s1 != s2 {
		t.Error("maxMemory change needlessly rolls the Sentinels")
	}
}

func TestClusteredWiring(t *testing.T) {
	d := mustRender(t, cluster(sessionv1.ModeClustered))
	env := envOf(find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Spec.Containers[0])
	peers := "shop-web-peers.web.svc.cluster.local"
	for _, k := range []string{"SESSION_PEERS_DNS", "DNS_MEMBERSHIP_SERVICE_NAME", "JGROUPS_DNS_QUERY", "HZ_NETWORK_JOIN_KUBERNETES_SERVICEDNS"} {
		if env[k].Value != peers {
			t.Errorf("%s = %q", k, env[k].Value)
		}
	}
	if env["KUBERNETES_NAMESPACE"].ValueFrom == nil {
		t.Error("KUBERNETES_NAMESPACE not from the downward API")
	}
	if _, ok := env["SESSION_REDIS_ADDR"]; ok {
		t.Error("clustered apps must not be wired to a store")
	}
}

// TestClusteredPeersForTomcat: what a Tomcat cluster (SimpleTcpCluster, DNS membership)
// needs from the operator: its replication port on the pods and on the headless peer
// Service, the port and the Service's name in the env, and time to copy the sessions
// before liveness counts.
func TestClusteredPeersForTomcat(t *testing.T) {
	for _, tc := range []struct {
		name string
		port int32
	}{{"default port", 0}, {"spec.clustering.port", 4100}} {
		t.Run(tc.name, func(t *testing.T) {
			sc := cluster(sessionv1.ModeClustered, func(s *sessionv1.SessionClusterSpec) {
				s.Apps[0].HealthPath = "/healthz"
				if tc.port != 0 {
					s.Clustering = &sessionv1.ClusteringSpec{Port: tc.port}
				}
			})
			want := tc.port
			if want == 0 {
				want = sessionv1.DefaultClusteringPort
			}
			d := mustRender(t, sc)
			svc := find[*corev1.Service](t, d, "shop-web-peers")
			if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("peer Service: clusterIP %q, publishNotReadyAddresses %v", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
			}
			var tcp *corev1.ServicePort
			for i, p := range svc.Spec.Ports {
				if p.Protocol == corev1.ProtocolTCP {
					tcp = &svc.Spec.Ports[i]
				}
			}
			if tcp == nil || tcp.Port != want || tcp.TargetPort.StrVal != "peers" {
				t.Fatalf("peer Service TCP port: %+v, want %d -> peers", tcp, want)
			}
			c := find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Spec.Containers[0]
			found := false
			for _, p := range c.Ports {
				found = found || (p.Name == "peers" && p.ContainerPort == want && p.Protocol == corev1.ProtocolTCP)
			}
			if !found {
				t.Errorf("container ports %+v: no peers %d/TCP", c.Ports, want)
			}
			env := envOf(c)
			if env["SESSION_PEERS_PORT"].Value != fmt.Sprint(want) {
				t.Errorf("SESSION_PEERS_PORT = %q, want %d", env["SESSION_PEERS_PORT"].Value, want)
			}
			if env["DNS_MEMBERSHIP_SERVICE_NAME"].Value != "shop-web-peers.web.svc.cluster.local" {
				t.Errorf("DNS_MEMBERSHIP_SERVICE_NAME = %q", env["DNS_MEMBERSHIP_SERVICE_NAME"].Value)
			}
			sp := c.StartupProbe
			if sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/healthz" {
				t.Fatalf("startupProbe %+v: want GET /healthz", sp)
			}
			if budget := sp.PeriodSeconds * sp.FailureThreshold; budget < 120 {
				t.Errorf("startupProbe allows %d s for a state transfer, want at least 120", budget)
			}
			if sp.PeriodSeconds > c.ReadinessProbe.PeriodSeconds {
				t.Errorf("startupProbe every %d s delays readiness more than the readiness probe (%d s)", sp.PeriodSeconds, c.ReadinessProbe.PeriodSeconds)
			}
		})
	}
	for _, mode := range []sessionv1.SessionMode{sessionv1.ModeStore, sessionv1.ModeSticky} {
		c := find[*appsv1.Deployment](t, mustRender(t, cluster(mode)), "shop-web").Spec.Template.Spec.Containers[0]
		if c.StartupProbe != nil {
			t.Errorf("%s: startupProbe %+v; only clustered pods copy state before serving", mode, c.StartupProbe)
		}
	}
}

func TestRenderIsPure(t *testing.T) {
	sc := cluster(sessionv1.ModeStore)
	before, _ := json.Marshal(sc)
	a, _ := json.Marshal(mustRender(t, sc).Objects)
	b, _ := json.Marshal(mustRender(t, sc).Objects)
	after, _ := json.Marshal(sc)
	if string(a) != string(b) {
		t.Error("two renders of one spec differ")
	}
	if string(before) != string(after) {
		t.Error("render changed its input")
	}
}

func TestRenderRefusesAStoreWithoutPassword(t *testing.T) {
	sc := cluster(sessionv1.ModeStore)
	if _, err := Render(sc, Options{}, Inputs{Internal: testInternal}); err == nil {
		t.Error("rendered a generated auth Secret with an empty password")
	}
	if _, err := Render(sc, Options{}, Inputs{AppPasswords: map[string]string{"web": testPassword}}); err == nil {
		t.Error("rendered a store without the internal users' passwords")
	}
}

// TestStickyModeAloneUsesTheDefaultCookie: every field of spec.sticky has a default, so a
// spec with `mode: Sticky` and no `sticky` block still pins users.
func TestStickyModeAloneUsesTheDefaultCookie(t *testing.T) {
	sc := cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) {
		s.Sticky = nil
		s.Ingress = &sessionv1.IngressSpec{Host: "shop.example.com"}
	})
	d := mustRender(t, sc)
	var found bool
	for _, o := range d.Objects {
		ing, ok := o.(*networkingv1.Ingress)
		if !ok {
			continue
		}
		found = true
		if got := ing.Annotations[nginxPrefix+"session-cookie-name"]; got != sessionv1.DefaultCookieName {
			t.Errorf("Ingress %s cookie name = %q, want the default %q", ing.Name, got, sessionv1.DefaultCookieName)
		}
		if got := ing.Annotations[nginxPrefix+"affinity"]; got != "cookie" {
			t.Errorf("Ingress %s affinity = %q, want cookie", ing.Name, got)
		}
	}
	if !found {
		t.Fatal("no Ingress rendered for a Sticky spec with an ingress")
	}
}

// TestNetworkPolicyAdmitsTheOperatorFromItsNamespaceOnly: a pod elsewhere carrying the
// operator's labels must not pass as the operator.
func TestNetworkPolicyAdmitsTheOperatorFromItsNamespaceOnly(t *testing.T) {
	sc := cluster(sessionv1.ModeStore)
	d, err := Render(sc, Options{OperatorNamespace: "session-system"}, inputsFor(sc, testPassword))
	if err != nil {
		t.Fatal(err)
	}
	var np *networkingv1.NetworkPolicy
	for _, o := range d.Objects {
		if p, ok := o.(*networkingv1.NetworkPolicy); ok {
			np = p
		}
	}
	if np == nil {
		t.Fatal("no NetworkPolicy rendered for a store")
	}
	var operatorPeers int
	for _, peer := range np.Spec.Ingress[0].From {
		if peer.PodSelector == nil || peer.PodSelector.MatchLabels[LabelName] != DefaultOperatorPodLabels[LabelName] {
			continue
		}
		operatorPeers++
		if peer.NamespaceSelector == nil || peer.NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "session-system" ||
			len(peer.NamespaceSelector.MatchLabels) != 1 || len(peer.NamespaceSelector.MatchExpressions) != 0 {
			t.Errorf("operator peer admits namespaces %+v, want only session-system", peer.NamespaceSelector)
		}
	}
	if operatorPeers != 1 {
		t.Errorf("%d operator peers in %+v", operatorPeers, np.Spec.Ingress[0].From)
	}
}

// TestScaleRollsNoPod: changing the number of servers or Sentinels changes the ConfigMap's
// host lists, never a pod template, so no running pod is replaced and no failover happens.
func TestScaleRollsNoPod(t *testing.T) {
	templates := func(servers, sentinels int32) (string, string, map[string]string) {
		d := mustRender(t, cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
			s.Store.Replicas = servers
			s.Store.Sentinel.Replicas = sentinels
		}))
		a := find[*appsv1.StatefulSet](t, d, "shop-store")
		b := find[*appsv1.StatefulSet](t, d, "shop-sentinel")
		return Hash(a.Spec.Template), Hash(b.Spec.Template), find[*corev1.ConfigMap](t, d, "shop-store-config").Data
	}
	s3, t3, cm3 := templates(3, 3)
	s5, t5, cm5 := templates(5, 5)
	if s3 != s5 || t3 != t5 {
		t.Error("scaling 3 -> 5 changed a pod template")
	}
	if cm3[HostsFileStore] == cm5[HostsFileStore] || cm3[HostsFileSentinel] == cm5[HostsFileSentinel] {
		t.Error("scaling did not change the host lists")
	}
}

// TestClaimsFollowDeleteClaim: claims of scaled-away replicas go when deleteClaim is set.
func TestClaimsFollowDeleteClaim(t *testing.T) {
	for _, del := range []bool{false, true} {
		d := mustRender(t, cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
			s.Store.Persistence = &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi"), DeleteClaim: del}
		}))
		p := find[*appsv1.StatefulSet](t, d, "shop-store").Spec.PersistentVolumeClaimRetentionPolicy
		want := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		if del {
			want = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}
		if p == nil || p.WhenScaled != want || p.WhenDeleted != want {
			t.Errorf("deleteClaim %v: retention %+v", del, p)
		}
	}
}

// TestTwoServerStoreKeepsWriting: with two servers, requiring a replica would stop every
// write when either dies; the default requires none.
func TestTwoServerStoreKeepsWriting(t *testing.T) {
	d := mustRender(t, cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) { s.Store.Replicas = 2 }))
	cm := find[*corev1.ConfigMap](t, d, "shop-store-config")
	if !strings.Contains(cm.Data["redis.conf"], "min-replicas-to-write 0") {
		t.Errorf("two servers must keep writing when one dies:\n%s", cm.Data["redis.conf"])
	}
}
