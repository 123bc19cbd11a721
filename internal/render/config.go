package render

import (
	"embed"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

//go:embed scripts/*.sh
var scripts embed.FS

// Where the store's containers find things.
const (
	ConfigDir = "/etc/session-store"
	RunDir    = "/run/session-store"
	DataDir   = "/data"
)

// Script returns one of the store's boot and probe scripts.
func Script(name string) string {
	raw, err := scripts.ReadFile("scripts/" + name)
	if err != nil {
		return ""
	}
	return string(raw)
}

// scriptNames are the scripts the store's ConfigMap carries.
var scriptNames = []string{"common.sh", "redis-boot.sh", "redis-probe.sh", "redis-prestop.sh", "sentinel-boot.sh", "sentinel-probe.sh"}

// clusterScriptNames are those of a sharded store (Redis Cluster, no Sentinel).
var clusterScriptNames = []string{"common.sh", "cluster-boot.sh", "redis-probe.sh", "cluster-prestop.sh"}

// StoreConfigFiles is the content of the store's ConfigMap: Redis and Sentinel
// configuration without any secret (the boot scripts add the password at start, into a
// private directory) and the scripts that boot and probe the servers.
func StoreConfigFiles(spec *StoreParams) map[string]string {
	files := map[string]string{
		"redis.conf":      redisConf(spec),
		HostsFileStore:    strings.Join(spec.StoreHosts, " ") + "\n",
		HostsFileSentinel: strings.Join(spec.SentinelHosts, " ") + "\n",
	}
	names := scriptNames
	if spec.Cluster {
		names = clusterScriptNames
	} else {
		files["sentinel.conf"] = sentinelConf()
		files["sentinel-master.conf"] = sentinelMasterConf(spec)
	}
	for _, s := range names {
		files[s] = Script(s)
	}
	return files
}

// The ConfigMap files holding the servers' and the Sentinels' host names, space
// separated, in ordinal order. No config hash covers them: a scale changes them without
// rolling any pod, and a running pod sees the new list when the kubelet refreshes the
// volume (a booting pod reads the current one).
const (
	HostsFileStore    = "store-hosts"
	HostsFileSentinel = "sentinel-hosts"
)

// StoreParams are the settings the store's configuration text depends on.
type StoreParams struct {
	StoreHosts         []string
	SentinelHosts      []string
	MasterName         string
	MaxMemoryBytes     int64
	MinReplicasToWrite int32
	Persistent         bool
	DownAfterMillis    int64
	FailoverMillis     int64
	// Cluster makes the servers a Redis Cluster (spec.store.shards); then no Sentinel
	// runs, SentinelHosts is empty and ClusterNodeTimeoutMillis is the failover timeout.
	Cluster                  bool
	ClusterNodeTimeoutMillis int64
}

func redisConf(p *StoreParams) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	line("# Rendered by session-operator. No secret lives here: the boot script adds the ACL")
	line("# users and the replication password into a private runtime file including this one.")
	line("protected-mode no")
	// Expiry and deletion events, which Spring Session listens for; set here so that no
	// app needs CONFIG (which its user may not run).
	line("notify-keyspace-events Egx")
	line("tcp-keepalive 30")
	line("maxmemory %d", p.MaxMemoryBytes)
	// Sessions carry a TTL: under memory pressure evict the least recently used of them
	// rather than refuse logins, and never a key without a TTL.
	line("maxmemory-policy volatile-lru")
	line("min-replicas-to-write %d", p.MinReplicasToWrite)
	line("min-replicas-max-lag 10")
	line("replica-read-only yes")
	line("replica-serve-stale-data yes")
	line("repl-diskless-sync yes")
	line("repl-diskless-sync-delay 0")
	if p.Persistent {
		line("appendonly yes")
		line("appendfsync everysec")
		line("save 3600 1 300 100 60 10000")
	} else {
		line("appendonly no")
		line(`save ""`)
	}
	if p.Cluster {
		b.WriteString(clusterConf(p))
	}
	return b.String()
}

// sentinelConf is what comes before the monitor line: host names, never pod addresses.
func sentinelConf() string {
	return "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
}

// sentinelMasterConf is what comes after the monitor line.
func sentinelMasterConf(p *StoreParams) string {
	return fmt.Sprintf("sentinel down-after-milliseconds %[1]s %[2]d\nsentinel failover-timeout %[1]s %[3]d\nsentinel parallel-syncs %[1]s 1\n",
		p.MasterName, p.DownAfterMillis, p.FailoverMillis)
}

func (b *builder) storeParams() *StoreParams {
	st := b.spec.Store
	if b.spec.Sharded() {
		return &StoreParams{
			StoreHosts:               b.names.StoreHosts(StoreServers(st)),
			MasterName:               b.names.MasterName(),
			MaxMemoryBytes:           st.MaxMemory.Value(),
			MinReplicasToWrite:       *st.MinReplicasToWrite,
			Persistent:               st.Persistence != nil,
			Cluster:                  true,
			ClusterNodeTimeoutMillis: st.ClusterNodeTimeout.Milliseconds(),
		}
	}
	return &StoreParams{
		StoreHosts:         b.names.StoreHosts(st.Replicas),
		SentinelHosts:      b.names.SentinelHosts(st.Sentinel.Replicas),
		MasterName:         b.names.MasterName(),
		MaxMemoryBytes:     st.MaxMemory.Value(),
		MinReplicasToWrite: *st.MinReplicasToWrite,
		Persistent:         st.Persistence != nil,
		DownAfterMillis:    st.Sentinel.DownAfter.Milliseconds(),
		FailoverMillis:     st.Sentinel.FailoverTimeout.Milliseconds(),
	}
}

func (b *builder) storeConfig() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: b.meta(b.names.StoreConfig(), ComponentStore, "redis"),
		Data:       StoreConfigFiles(b.storeParams()),
	}
}
