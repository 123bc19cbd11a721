package render

import (
	"fmt"
	"strings"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Ports the store listens on.
const (
	RedisPort    = 6379
	SentinelPort = 26379
)

// Names derives every child's name and DNS name from the SessionCluster; nothing else
// in the operator spells a child name.
type Names struct {
	Cluster   string
	Namespace string
	Domain    string
}

// NamesFor returns the names of sc's children in a cluster whose DNS domain is domain.
func NamesFor(sc *sessionv1.SessionCluster, domain string) Names {
	if domain == "" {
		domain = DefaultClusterDomain
	}
	return Names{Cluster: sc.Name, Namespace: sc.Namespace, Domain: domain}
}

func (n Names) Store() string         { return n.Cluster + "-store" }
func (n Names) StoreHeadless() string { return n.Cluster + "-store-headless" }
func (n Names) StoreConfig() string   { return n.Cluster + "-store-config" }
func (n Names) AuthSecret() string    { return n.Cluster + "-store-auth" }
func (n Names) UsersSecret() string   { return n.Cluster + "-store-users" }
func (n Names) Sentinel() string      { return n.Cluster + "-sentinel" }
func (n Names) Binding() string       { return n.Cluster + "-session" }
func (n Names) App(app string) string { return n.Cluster + "-" + app }
func (n Names) Peers(app string) string {
	return n.Cluster + "-" + app + "-peers"
}

// MasterName is the name the Sentinels know the primary by.
func (n Names) MasterName() string { return n.Cluster }

// ServiceHost is the cluster DNS name of a Service.
func (n Names) ServiceHost(svc string) string {
	return fmt.Sprintf("%s.%s.svc.%s", svc, n.Namespace, n.Domain)
}

// StoreDomain is the headless domain the Redis pods' stable names live under.
func (n Names) StoreDomain() string { return n.ServiceHost(n.StoreHeadless()) }

// SentinelDomain is the headless domain the Sentinel pods' stable names live under.
func (n Names) SentinelDomain() string { return n.ServiceHost(n.Sentinel()) }

// StorePod is the name of the i-th Redis pod.
func (n Names) StorePod(i int) string { return fmt.Sprintf("%s-%d", n.Store(), i) }

// SentinelPod is the name of the i-th Sentinel pod.
func (n Names) SentinelPod(i int) string { return fmt.Sprintf("%s-%d", n.Sentinel(), i) }

// StoreHosts are the stable DNS names of the Redis pods, in ordinal order.
func (n Names) StoreHosts(replicas int32) []string {
	out := make([]string, replicas)
	for i := range out {
		out[i] = n.StorePod(i) + "." + n.StoreDomain()
	}
	return out
}

// SentinelHosts are the stable DNS names of the Sentinel pods, in ordinal order.
func (n Names) SentinelHosts(replicas int32) []string {
	out := make([]string, replicas)
	for i := range out {
		out[i] = n.SentinelPod(i) + "." + n.SentinelDomain()
	}
	return out
}

// PodFromHost maps a stable DNS name back to its pod name (its first label).
func PodFromHost(host string) string {
	host, _, _ = strings.Cut(host, ".")
	return host
}
