package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sessionops/session-operator/internal/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s, err = client.New(cfg, client.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

const store = `
apiVersion: session.sessionops.dev/v1alpha1
kind: SessionCluster
metadata: {name: shop, namespace: default}
spec:
  mode: Store
  apps: [{name: web, image: example/shop:1.4}]
  store: {}
`

// manifest applies edit (a YAML fragment merged over the Store base, as a JSON merge patch
// would) and returns the object.
func manifest(t *testing.T, base, name string, edit map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(base), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetName(name)
	mergeInto(u.Object, edit)
	return u
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, ok := v.(map[string]any)
		dm, ok2 := dst[k].(map[string]any)
		if ok && ok2 {
			mergeInto(dm, sm)
			continue
		}
		dst[k] = v
	}
}

type m = map[string]any
type l = []any

func TestValidManifestsAreAccepted(t *testing.T) {
	for name, edit := range map[string]m{
		"store-defaults": {},
		"sticky-hybrid": {"spec": m{"mode": "Sticky", "sticky": m{"cookieName": "route", "maxAge": "2h", "mode": "Persistent"},
			"ingress": m{"host": "shop.example.com", "tls": m{"secretName": "shop-tls"}}}},
		"sticky-only": {"spec": m{"mode": "Sticky", "store": nil, "sticky": m{"clientIP": m{"timeout": "1h"}}}},
		// Every field of spec.sticky has a default, so the mode alone is enough.
		"sticky-mode-alone": {"spec": m{"mode": "Sticky", "store": nil}},
		"clustered":         {"spec": m{"mode": "Clustered", "store": nil, "clustering": m{"port": 4000, "discovery": "KubernetesAPI"}}},
		"store-full": {"spec": m{"session": m{"ttl": "1h30m"}, "store": m{"replicas": 5, "minReplicasToWrite": 2, "maxMemory": "1Gi",
			"sentinel":    m{"replicas": 5, "quorum": 3, "downAfter": "2500ms", "failoverTimeout": "2m"},
			"persistence": m{"size": "1Gi", "storageClassName": "fast", "deleteClaim": true},
			"auth":        m{"existingSecret": "shop-redis", "existingSecretKey": "redis-password"}}}},
		"two-servers":              {"spec": m{"store": m{"replicas": 2, "minReplicasToWrite": 0}}},
		"single-server-1-sentinel": {"spec": m{"store": m{"replicas": 1, "sentinel": m{"replicas": 1, "quorum": 1}}}},
		"gateway":                  {"spec": m{"ingress": m{"host": "shop.example.com", "controller": "GatewayAPI", "parentRefs": l{m{"name": "public"}}}}},
		"workload-ref":             {"spec": m{"apps": l{m{"name": "web", "port": 3000, "keyPrefix": "sess:", "workloadRef": m{"kind": "StatefulSet", "name": "my-web", "containers": l{"web"}}}}}},
		"template-without-image": {"spec": m{"apps": l{m{"name": "web", "template": m{
			"metadata": m{"labels": m{"team": "web"}, "annotations": m{"a": "b"}},
			"spec": m{"serviceAccountName": "web", "imagePullSecrets": l{m{"name": "registry"}},
				"containers":  l{m{"name": "app", "image": "a:1"}, m{"name": "proxy", "image": "p:1"}},
				"tolerations": l{m{"key": "k", "operator": "Exists"}}}}}}}},
		"store-placement": {"spec": m{"store": m{
			"pod": m{"metadata": m{"labels": m{"team": "x"}}, "nodeSelector": m{"pool": "db"}, "priorityClassName": "high",
				"imagePullSecrets":          l{m{"name": "registry"}},
				"tolerations":               l{m{"key": "db", "operator": "Exists", "effect": "NoSchedule"}},
				"topologySpreadConstraints": l{m{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}},
				"affinity":                  m{"nodeAffinity": m{"requiredDuringSchedulingIgnoredDuringExecution": m{"nodeSelectorTerms": l{m{"matchExpressions": l{m{"key": "a", "operator": "Exists"}}}}}}}},
			"sentinel": m{"resources": m{"requests": m{"memory": "48Mi"}}, "pod": m{"priorityClassName": "low"}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			u := manifest(t, store, "ok-"+name, edit)
			if err := k8s.Create(context.Background(), u); err != nil {
				t.Fatalf("valid manifest refused: %v", err)
			}
			_ = k8s.Delete(context.Background(), u)
		})
	}
}

// TestInvalidManifestsNameTheField proves that bad input is refused by the apiserver
// itself, before the operator sees it, with a message naming the offending field.
func TestInvalidManifestsNameTheField(t *testing.T) {
	long := strings.Repeat("a", 31)
	cases := []struct {
		name  string
		edit  m
		field string
	}{
		{"unknown mode", m{"spec": m{"mode": "Memcached"}}, "spec.mode"},
		{"store mode without store", m{"spec": m{"store": nil}}, "spec.store"},
		{"clustered with store", m{"spec": m{"mode": "Clustered"}}, "spec.store"},
		{"no apps", m{"spec": m{"apps": l{}}}, "spec.apps"},
		{"duplicate app names", m{"spec": m{"apps": l{m{"name": "web", "image": "a:1"}, m{"name": "web", "image": "b:1"}}}}, "spec.apps[1]"},
		{"empty image", m{"spec": m{"apps": l{m{"name": "web", "image": ""}}}}, "spec.apps[0].image"},
		{"port out of range", m{"spec": m{"apps": l{m{"name": "web", "image": "a:1", "port": 70000}}}}, "spec.apps[0].port"},
		{"zero app replicas", m{"spec": m{"apps": l{m{"name": "web", "image": "a:1", "replicas": 0}}}}, "spec.apps[0].replicas"},
		{"app name taken by the store", m{"spec": m{"apps": l{m{"name": "store", "image": "a:1"}}}}, "spec.apps[0].name"},
		{"zero store replicas", m{"spec": m{"store": m{"replicas": 0}}}, "spec.store.replicas"},
		{"quorum above sentinels", m{"spec": m{"store": m{"sentinel": m{"replicas": 3, "quorum": 4}}}}, "spec.store.sentinel.quorum"},
		{"ttl not a duration", m{"spec": m{"session": m{"ttl": "30 minutes"}}}, "spec.session.ttl"},
		{"downAfter too short", m{"spec": m{"store": m{"sentinel": m{"downAfter": "500ms"}}}}, "spec.store.sentinel.downAfter"},
		{"name too long for child names", m{"metadata": m{"name": long}}, "metadata.name"},
		{"minReplicasToWrite not below replicas", m{"spec": m{"store": m{"replicas": 3, "minReplicasToWrite": 3}}}, "spec.store.minReplicasToWrite"},
		{"every replica required to write", m{"spec": m{"store": m{"replicas": 2, "minReplicasToWrite": 1}}}, "spec.store.minReplicasToWrite"},
		{"every replica of three required", m{"spec": m{"store": m{"replicas": 3, "minReplicasToWrite": 2}}}, "spec.store.minReplicasToWrite"},
		{"two sentinels for a replicated store", m{"spec": m{"store": m{"replicas": 2, "sentinel": m{"replicas": 2, "quorum": 1}}}}, "spec.store.sentinel.replicas"},
		{"one sentinel for a replicated store", m{"spec": m{"store": m{"sentinel": m{"replicas": 1, "quorum": 1}}}}, "spec.store.sentinel.replicas"},
		{"quorum of every sentinel", m{"spec": m{"store": m{"sentinel": m{"replicas": 3, "quorum": 3}}}}, "spec.store.sentinel.quorum"},
		{"maxMemory too small", m{"spec": m{"store": m{"maxMemory": "1Mi"}}}, "spec.store.maxMemory"},
		{"clustering outside Clustered", m{"spec": m{"clustering": m{"port": 4000}}}, "spec.clustering"},
		{"gateway without parentRefs", m{"spec": m{"ingress": m{"host": "a.example.com", "controller": "GatewayAPI"}}}, "spec.ingress.parentRefs"},
		{"two apps on one path", m{"spec": m{"ingress": m{"host": "a.example.com"},
			"apps": l{m{"name": "web", "image": "a:1"}, m{"name": "api", "image": "b:1"}}}}, "spec.apps"},
		{"SameSite None without Secure", m{"spec": m{"mode": "Sticky", "sticky": m{"sameSite": "None"}}}, "spec.sticky.secure"},
		{"existingSecret not a name", m{"spec": m{"store": m{"auth": m{"existingSecret": "Bad_Name"}}}}, "spec.store.auth.existingSecret"},
		{"unknown ingress controller", m{"spec": m{"ingress": m{"host": "a.example.com", "controller": "Envoy"}}}, "spec.ingress.controller"},
		{"persistence size too small", m{"spec": m{"store": m{"persistence": m{"size": "1Mi"}}}}, "spec.store.persistence.size"},
		{"workloadRef with image", m{"spec": m{"apps": l{m{"name": "web", "image": "a:1", "workloadRef": m{"name": "my-web"}}}}}, "spec.apps[0].image"},
		{"workloadRef with replicas", m{"spec": m{"apps": l{m{"name": "web", "replicas": 2, "workloadRef": m{"name": "my-web"}}}}}, "spec.apps[0].workloadRef"},
		{"workloadRef with template", m{"spec": m{"apps": l{m{"name": "web", "workloadRef": m{"name": "my-web"}, "template": m{"metadata": m{"labels": m{"a": "b"}}}}}}}, "spec.apps[0].workloadRef"},
		{"no image, workloadRef or template", m{"spec": m{"apps": l{m{"name": "web"}}}}, "spec.apps[0].image"},
		{"one workload wired twice", m{"spec": m{"apps": l{m{"name": "web", "workloadRef": m{"name": "my-web"}}, m{"name": "api", "path": "/api", "workloadRef": m{"name": "my-web"}}}}}, "spec.apps"},
		{"workloadRef of another kind", m{"spec": m{"apps": l{m{"name": "web", "workloadRef": m{"kind": "DaemonSet", "name": "my-web"}}}}}, "spec.apps[0].workloadRef.kind"},
		{"template label the operator selects on", m{"spec": m{"apps": l{m{"name": "web", "image": "a:1", "template": m{"metadata": m{"labels": m{"app.kubernetes.io/instance": "x"}}}}}}}, "spec.apps[0].template.metadata"},
		{"store pod label the operator selects on", m{"spec": m{"store": m{"pod": m{"metadata": m{"labels": m{"session.sessionops.dev/role": "primary"}}}}}}, "spec.store.pod.metadata"},
		{"sentinel priorityClassName too long", m{"spec": m{"store": m{"sentinel": m{"pod": m{"priorityClassName": strings.Repeat("p", 254)}}}}}, "spec.store.sentinel.pod.priorityClassName"},
	}
	if len(cases) < 12 {
		t.Fatalf("the issue asks for at least 12 invalid manifests, have %d", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("bad-%d", i)
			if md, ok := tc.edit["metadata"].(m); ok && md["name"] != nil {
				name = md["name"].(string)
			}
			u := manifest(t, store, name, tc.edit)
			err := k8s.Create(context.Background(), u)
			if err == nil {
				_ = k8s.Delete(context.Background(), u)
				t.Fatalf("apiserver accepted an invalid manifest (%s)", tc.name)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error does not name %s:\n%v", tc.field, err)
			}
		})
	}
}
