package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		backend string
		mode    string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: map[string]string{}, backend: BackendMemory, mode: ModeSticky,
			check: func(t *testing.T, c Config) {
				if c.Port != 8080 || c.CookieName != "sid" || c.TTL != 30*time.Minute || c.WaitReplicas != 0 {
					t.Errorf("defaults: %+v", c)
				}
			}},
		{name: "store via sentinel", backend: BackendRedis, mode: ModeStore, env: map[string]string{
			"SESSION_MODE": "Store", "SESSION_TTL": "45m0s", "SESSION_TTL_SECONDS": "60",
			"SESSION_REDIS_SENTINEL_ADDRS":  "s-0.s:26379, s-1.s:26379,s-2.s:26379",
			"SESSION_REDIS_SENTINEL_MASTER": "mymaster", "SESSION_REDIS_ADDR": "shop-store:6379",
			"SESSION_REDIS_PASSWORD": " pw with spaces ", "SESSION_REDIS_WAIT_REPLICAS": "1",
			"SESSION_REDIS_USERNAME": "app-web",
			"PORT":                   "9090", "SESSION_COOKIE_NAME": "shop_sid", "POD_NAME": "web-abc",
		}, check: func(t *testing.T, c Config) {
			if c.TTL != 45*time.Minute { // SESSION_TTL wins over SESSION_TTL_SECONDS
				t.Errorf("TTL %s", c.TTL)
			}
			if strings.Join(c.SentinelAddrs, "|") != "s-0.s:26379|s-1.s:26379|s-2.s:26379" {
				t.Errorf("sentinels %q", c.SentinelAddrs)
			}
			if c.RedisPassword != " pw with spaces " || c.RedisUsername != "app-web" || c.WaitReplicas != 1 || c.Port != 9090 ||
				c.CookieName != "shop_sid" || c.Instance != "web-abc" {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "store via address only", backend: BackendRedis, mode: ModeStore, env: map[string]string{
			"SESSION_REDIS_ADDR": "10.0.0.1:6379", "SESSION_TTL_SECONDS": "90"},
			check: func(t *testing.T, c Config) {
				if c.TTL != 90*time.Second {
					t.Errorf("TTL %s", c.TTL)
				}
			}},
		{name: "sticky hybrid uses the store", backend: BackendRedis, mode: ModeSticky, env: map[string]string{
			"SESSION_MODE": "Sticky", "SESSION_REDIS_ADDR": "r:6379"}},
		{name: "clustered", backend: BackendCluster, mode: ModeClustered, env: map[string]string{
			"SESSION_MODE": "Clustered", "SESSION_PEERS_DNS": "web-peers.ns.svc", "SESSION_PEERS_PORT": "4000",
			"POD_NAME": "web-1", "POD_IP": "10.1.2.3"},
			check: func(t *testing.T, c Config) {
				if c.PeersPort != 4000 || c.PeersDNS != "web-peers.ns.svc" || c.PodIP != "10.1.2.3" {
					t.Errorf("got %+v", c)
				}
			}},
		{name: "clustered with redis wiring uses redis", backend: BackendRedis, mode: ModeClustered, env: map[string]string{
			"SESSION_MODE": "clustered", "SESSION_REDIS_ADDR": "r:6379", "SESSION_PEERS_PORT": "4000"}},
		{name: "cluster", backend: BackendRedis, mode: ModeStore, env: map[string]string{
			"SESSION_MODE": "Store", "SESSION_REDIS_MODE": "cluster", "SESSION_REDIS_CLUSTER_NODES": "r-0.h:6379, r-1.h:6379"},
			check: func(t *testing.T, c Config) {
				if c.RedisMode != "cluster" || len(c.ClusterNodes) != 2 || c.ClusterNodes[1] != "r-1.h:6379" {
					t.Fatalf("cluster wiring %q %v", c.RedisMode, c.ClusterNodes)
				}
			}},
		{name: "store without wiring falls back to memory", backend: BackendMemory, mode: ModeStore, env: map[string]string{
			"SESSION_MODE": "Store"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustConfig(t, tc.env)
			if c.Backend != tc.backend || c.Mode != tc.mode {
				t.Fatalf("backend %q mode %q, want %q %q", c.Backend, c.Mode, tc.backend, tc.mode)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestLoadConfigRejects(t *testing.T) {
	for _, env := range []map[string]string{
		{"SESSION_MODE": "Sessions"},
		{"SESSION_TTL": "30"},
		{"SESSION_TTL": "-1m"},
		{"SESSION_TTL_SECONDS": "abc"},
		{"PORT": "0"},
		{"SESSION_REDIS_WAIT_REPLICAS": "-1"},
		{"SESSION_REDIS_SENTINEL_ADDRS": "s-0:26379"}, // no master name
		{"SESSION_REDIS_SENTINEL_ADDRS": "s-0", "SESSION_REDIS_SENTINEL_MASTER": "m"},
		{"SESSION_REDIS_ADDR": "redis"},
		{"SESSION_MODE": "Clustered"}, // no peers port
		{"SESSION_PAD_BYTES": "99999999"},
		{"SESSION_REDIS_MODE": "cluster"}, // no nodes
		{"SESSION_REDIS_MODE": "sharded", "SESSION_REDIS_CLUSTER_NODES": "r-0:6379"},
		{"SESSION_REDIS_MODE": "cluster", "SESSION_REDIS_CLUSTER_NODES": "r-0"},
		{"SESSION_REDIS_CLUSTER_NODES": "r-0:6379"}, // nodes without the mode
	} {
		_, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err == nil {
			t.Errorf("LoadConfig(%v) accepted it", env)
		}
	}
}
