package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestShardedStoreManifests: store.shards is accepted in Store and Sticky (hybrid) mode
// with its own failover timeout, and refused where it makes no sense, naming the field.
func TestShardedStoreManifests(t *testing.T) {
	ctx := context.Background()
	for name, edit := range map[string]m{
		"store-3-shards": {"spec": m{"store": m{"shards": 3}}},
		"hybrid-shards": {"spec": m{"mode": "Sticky", "store": m{"shards": 4, "replicas": 2, "clusterNodeTimeout": "3s",
			"persistence": m{"size": "1Gi"}}}},
		"sentinel-defaults": {"spec": m{"store": m{"shards": 32, "sentinel": m{"replicas": 3}}}},
	} {
		t.Run(name, func(t *testing.T) {
			u := manifest(t, store, "shards-ok-"+name, edit)
			if err := k8s.Create(ctx, u); err != nil {
				t.Fatalf("valid manifest refused: %v", err)
			}
			_ = k8s.Delete(ctx, u)
		})
	}
	for i, tc := range []struct {
		name  string
		edit  m
		field string
	}{
		{"two shards", m{"spec": m{"store": m{"shards": 2}}}, "spec.store.shards"},
		{"too many shards", m{"spec": m{"store": m{"shards": 33}}}, "spec.store.shards"},
		{"shards in Clustered mode", m{"spec": m{"mode": "Clustered", "store": m{"shards": 3}}}, "spec.store"},
		{"clusterNodeTimeout without shards", m{"spec": m{"store": m{"clusterNodeTimeout": "5s"}}}, "spec.store.clusterNodeTimeout"},
		{"clusterNodeTimeout too short", m{"spec": m{"store": m{"shards": 3, "clusterNodeTimeout": "500ms"}}}, "spec.store.clusterNodeTimeout"},
		{"sentinel pod with shards", m{"spec": m{"store": m{"shards": 3, "sentinel": m{"pod": m{"priorityClassName": "low"}}}}}, "spec.store.sentinel"},
		{"sentinel resources with shards", m{"spec": m{"store": m{"shards": 3, "sentinel": m{"resources": m{"requests": m{"memory": "48Mi"}}}}}}, "spec.store.sentinel"},
		{"every shard replica required to write", m{"spec": m{"store": m{"shards": 3, "replicas": 2, "minReplicasToWrite": 1}}}, "spec.store.minReplicasToWrite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := manifest(t, store, fmt.Sprintf("shards-bad-%d", i), tc.edit)
			err := k8s.Create(ctx, u)
			if err == nil {
				_ = k8s.Delete(ctx, u)
				t.Fatalf("apiserver accepted an invalid manifest (%s)", tc.name)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error does not name %s:\n%v", tc.field, err)
			}
		})
	}
}

// TestShardsCannotBeSwitchedInPlace: a running store never turns from Sentinel into
// Redis Cluster or back (either would lose its sessions), nor changes its servers per
// shard; the shard count itself may change (slots move live).
func TestShardsCannotBeSwitchedInPlace(t *testing.T) {
	ctx := context.Background()
	update := func(t *testing.T, name string, create, edit m) error {
		t.Helper()
		u := manifest(t, store, name, create)
		if err := k8s.Create(ctx, u); err != nil {
			t.Fatalf("creating: %v", err)
		}
		t.Cleanup(func() { _ = k8s.Delete(ctx, u) })
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(u.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
			t.Fatal(err)
		}
		mergeInto(got.Object, edit)
		return k8s.Update(ctx, got)
	}
	for i, tc := range []struct {
		name         string
		create, edit m
		field        string // empty: the update is accepted
	}{
		{"sentinel to sharded", m{}, m{"spec": m{"store": m{"shards": 3}}}, "spec.store.shards"},
		{"sharded to sentinel", m{"spec": m{"store": m{"shards": 3}}}, m{"spec": m{"store": m{"shards": nil}}}, "spec.store.shards"},
		{"servers per shard", m{"spec": m{"store": m{"shards": 3}}}, m{"spec": m{"store": m{"replicas": 2}}}, "spec.store.replicas"},
		{"more shards", m{"spec": m{"store": m{"shards": 3}}}, m{"spec": m{"store": m{"shards": 4}}}, ""},
		{"fewer shards", m{"spec": m{"store": m{"shards": 4}}}, m{"spec": m{"store": m{"shards": 3}}}, ""},
		{"sentinel store replicas still change", m{}, m{"spec": m{"store": m{"replicas": 5}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := update(t, fmt.Sprintf("shards-upd-%d", i), tc.create, tc.edit)
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("update refused: %v", err)
			case tc.field != "" && err == nil:
				t.Fatalf("apiserver accepted %s", tc.name)
			case tc.field != "" && !strings.Contains(err.Error(), tc.field):
				t.Fatalf("error does not name %s:\n%v", tc.field, err)
			}
		})
	}
}
