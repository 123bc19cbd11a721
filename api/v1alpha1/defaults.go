package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The defaults the CRD schema applies, repeated for code paths that see an object the
// apiserver never defaulted (unit tests, objects decoded from files).
const (
	DefaultTTL                = 30 * time.Minute
	DefaultAppPort            = int32(8080)
	DefaultAppPath            = "/"
	DefaultStoreImage         = "redis:7.4"
	DefaultStoreReplicas      = int32(3)
	DefaultSentinelReplicas   = int32(3)
	DefaultSentinelQuorum     = int32(2)
	DefaultDownAfter          = 5 * time.Second
	DefaultClusterNodeTimeout = 5 * time.Second
	DefaultFailoverTimeout    = 60 * time.Second
	DefaultMaxMemory          = "256Mi"
	DefaultSecretKey          = "password"
	DefaultCookieName         = "route"
	DefaultCookieMaxAge       = time.Hour
	DefaultClientIPTimeout    = 3 * time.Hour
	DefaultClusteringPort     = int32(4000)
	DefaultIngressController  = ControllerIngressNginx
)

// WithDefaults returns a copy of the spec with every defaulted field filled in.
func (s *SessionClusterSpec) WithDefaults() SessionClusterSpec {
	out := *s.DeepCopy()
	if out.Session.TTL == nil {
		out.Session.TTL = &metav1.Duration{Duration: DefaultTTL}
	}
	for i := range out.Apps {
		a := &out.Apps[i]
		// Replicas stay unset: then a HorizontalPodAutoscaler owns them.
		if a.WorkloadRef != nil && a.WorkloadRef.Kind == "" {
			a.WorkloadRef.Kind = WorkloadDeployment
		}
		if a.Port == 0 {
			a.Port = DefaultAppPort
		}
		if a.Path == "" {
			a.Path = DefaultAppPath
		}
	}
	if st := out.Store; st != nil {
		if st.Image == "" {
			st.Image = DefaultStoreImage
		}
		if st.Replicas == 0 {
			st.Replicas = DefaultStoreReplicas
		}
		if st.Sentinel.Replicas == 0 {
			st.Sentinel.Replicas = DefaultSentinelReplicas
		}
		if st.Sentinel.Quorum == 0 {
			st.Sentinel.Quorum = min(DefaultSentinelQuorum, st.Sentinel.Replicas)
		}
		if st.Sentinel.DownAfter == nil {
			st.Sentinel.DownAfter = &metav1.Duration{Duration: DefaultDownAfter}
		}
		if st.Sentinel.FailoverTimeout == nil {
			st.Sentinel.FailoverTimeout = &metav1.Duration{Duration: DefaultFailoverTimeout}
		}
		if st.Shards != nil && st.ClusterNodeTimeout == nil {
			st.ClusterNodeTimeout = &metav1.Duration{Duration: DefaultClusterNodeTimeout}
		}
		if st.MinReplicasToWrite == nil {
			// One replica required where one can be lost and one still remains (3+
			// servers); none with 2, where requiring it would stop all writes when either
			// server dies.
			m := max(0, min(int32(1), st.Replicas-2))
			st.MinReplicasToWrite = &m
		}
		if st.MaxMemory == nil {
			q := resource.MustParse(DefaultMaxMemory)
			st.MaxMemory = &q
		}
		if st.Auth.ExistingSecretKey == "" {
			st.Auth.ExistingSecretKey = DefaultSecretKey
		}
	}
	if out.Mode == ModeSticky && out.Sticky == nil {
		out.Sticky = &StickySpec{}
	}
	if sk := out.Sticky; sk != nil {
		if sk.CookieName == "" {
			sk.CookieName = DefaultCookieName
		}
		if sk.MaxAge == nil {
			sk.MaxAge = &metav1.Duration{Duration: DefaultCookieMaxAge}
		}
		if sk.Mode == "" {
			sk.Mode = StickyBalanced
		}
		if sk.SameSite == "" {
			sk.SameSite = SameSiteLax
		}
		if sk.ClientIP != nil && sk.ClientIP.Timeout == nil {
			sk.ClientIP.Timeout = &metav1.Duration{Duration: DefaultClientIPTimeout}
		}
	}
	if in := out.Ingress; in != nil && in.Controller == "" {
		in.Controller = DefaultIngressController
	}
	if out.Mode == ModeClustered {
		if out.Clustering == nil {
			out.Clustering = &ClusteringSpec{}
		}
		if out.Clustering.Port == 0 {
			out.Clustering.Port = DefaultClusteringPort
		}
		if out.Clustering.Discovery == "" {
			out.Clustering.Discovery = DiscoveryDNS
		}
	}
	return out
}

// HasStore reports whether the spec asks for a Redis store.
func (s *SessionClusterSpec) HasStore() bool { return s.Store != nil && s.Mode != ModeClustered }

// Sharded reports whether the spec asks for a Redis Cluster store (store.shards).
func (s *SessionClusterSpec) Sharded() bool { return s.HasStore() && s.Store.Shards != nil }
