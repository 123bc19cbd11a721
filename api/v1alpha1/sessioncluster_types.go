package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SessionMode is how a SessionCluster keeps its users' sessions.
// +kubebuilder:validation:Enum=Store;Sticky;Clustered
type SessionMode string

const (
	// ModeStore keeps sessions in a replicated Redis with Sentinel failover that every app pod uses.
	ModeStore SessionMode = "Store"
	// ModeSticky pins each user to one app pod with a load-balancer cookie; a store is optional.
	ModeSticky SessionMode = "Sticky"
	// ModeClustered lets app pods find each other and replicate sessions among themselves.
	ModeClustered SessionMode = "Clustered"
)

// SessionCluster is one web application's session infrastructure: its app Deployments,
// where their sessions live (a store, the pods themselves, or the load balancer's affinity),
// and the routing that reaches them.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sessc,categories=sessionops
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Primary",type=string,JSONPath=`.status.store.primary`
// +kubebuilder:printcolumn:name="Shards",type=integer,JSONPath=`.spec.store.shards`
// +kubebuilder:printcolumn:name="Slots",type=integer,JSONPath=`.status.store.slotsCovered`,priority=1
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 30",message="metadata.name must be a DNS label of at most 30 characters starting with a letter, so that every child name stays a valid DNS label"
type SessionCluster struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the user asks for.
	// +required
	Spec SessionClusterSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status SessionClusterStatus `json:"status,omitempty"`
}

// SessionClusterSpec describes the apps, where their sessions live and how users reach them.
// +kubebuilder:validation:XValidation:rule="self.mode != 'Store' || has(self.store)",message="spec.store is required when spec.mode is Store",fieldPath=".store",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="self.mode != 'Clustered' || !has(self.store)",message="spec.store is not allowed when spec.mode is Clustered: the app pods hold the sessions",fieldPath=".store",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.mode == 'Sticky' || !has(self.sticky)",message="spec.sticky is only allowed when spec.mode is Sticky",fieldPath=".sticky",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.mode == 'Clustered' || !has(self.clustering)",message="spec.clustering is only allowed when spec.mode is Clustered",fieldPath=".clustering",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self.apps.all(a, !has(a.workloadRef) || self.apps.exists_one(b, has(b.workloadRef) && b.workloadRef.name == a.workloadRef.name))",message="spec.apps[].workloadRef.name must be unique: one workload is wired once",fieldPath=".apps"
// +kubebuilder:validation:XValidation:rule="!has(self.ingress) || self.apps.all(a, self.apps.exists_one(b, b.path == a.path))",message="spec.apps[].path must be unique when spec.ingress is set: two apps cannot serve the same path",fieldPath=".apps"
type SessionClusterSpec struct {
	// mode is how sessions survive a user moving between app pods: Store (a shared,
	// replicated Redis), Sticky (load-balancer cookie affinity, optionally with a store), or
	// Clustered (app pods replicate sessions among themselves).
	// +required
	Mode SessionMode `json:"mode"`

	// session holds settings handed to every app.
	// +optional
	// +kubebuilder:default={}
	Session SessionSettings `json:"session,omitempty"`

	// apps are the Deployments the operator runs and wires to the session infrastructure.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Apps []AppSpec `json:"apps"`

	// store is the replicated Redis session store. Required for Store, optional for
	// Sticky (the recommended hybrid), forbidden for Clustered.
	// +optional
	Store *StoreSpec `json:"store,omitempty"`

	// sticky configures cookie affinity for Sticky; every field has a default, so
	// `mode: Sticky` alone pins users with the default cookie. Forbidden for the other modes.
	// +optional
	Sticky *StickySpec `json:"sticky,omitempty"`

	// ingress exposes the apps through an Ingress or a Gateway API HTTPRoute.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// clustering configures peer discovery. Only for Clustered.
	// +optional
	Clustering *ClusteringSpec `json:"clustering,omitempty"`
}

// SessionSettings are handed to the apps.
type SessionSettings struct {
	// ttl is how long an idle session lives. Apps receive it as SESSION_TTL; the store's
	// eviction policy only evicts keys that carry a TTL.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('720h'))",message="spec.session.ttl must be between 1s and 720h"
	TTL *metav1.Duration `json:"ttl,omitempty"`
}

// AppSpec is one application: a Deployment the operator creates, or (workloadRef) a
// Deployment or StatefulSet the user deploys and the operator only wires.
// +kubebuilder:validation:XValidation:rule="!has(self.workloadRef) || !has(self.image)",message="spec.apps[].image is not allowed with spec.apps[].workloadRef: the workload runs its own image",fieldPath=".image",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="has(self.workloadRef) || has(self.image) || has(self.template)",message="spec.apps[].image is required unless spec.apps[].workloadRef names a workload or spec.apps[].template has a container named app with an image",fieldPath=".image",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="!has(self.workloadRef) || !(has(self.template) || has(self.replicas) || has(self.args) || has(self.env) || has(self.imagePullPolicy) || has(self.healthPath) || (has(self.resources) && (has(self.resources.limits) || has(self.resources.requests))))",message="spec.apps[].template, replicas, args, env, resources, imagePullPolicy and healthPath are not allowed with spec.apps[].workloadRef: the workload's own manifest sets them",fieldPath=".workloadRef",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="!(self.name in ['store', 'store-headless', 'store-auth', 'store-users', 'store-config', 'sentinel', 'session']) && !self.name.endsWith('-peers')",message="spec.apps[].name must not be store, store-headless, store-auth, store-users, store-config, sentinel, session or end in -peers: those names belong to the session infrastructure",fieldPath=".name"
type AppSpec struct {
	// name of the app; its Deployment and Service are named <cluster>-<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=20
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// image of the app container. Required unless workloadRef is set (then forbidden) or
	// template has a container named app with an image.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// imagePullPolicy of the app container.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// replicas of the app Deployment. Unset, the operator never sets the Deployment's
	// replicas: a HorizontalPodAutoscaler (or kubectl scale) owns them, and a new
	// Deployment starts with 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=500
	Replicas *int32 `json:"replicas,omitempty"`

	// port the app listens on for HTTP.
	// +optional
	// +kubebuilder:default=8080
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// path under which the ingress routes to this app.
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/[-a-zA-Z0-9_./~]*$`
	Path string `json:"path,omitempty"`

	// healthPath is an HTTP path answering 200 when the app is ready; empty probes the TCP port.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/[-a-zA-Z0-9_./~]*$`
	HealthPath string `json:"healthPath,omitempty"`

	// args replace the image's default arguments.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Args []string `json:"args,omitempty"`

	// env is appended after the injected wiring; a user variable wins over an injected one
	// of the same name.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Env []corev1.EnvVar `json:"env,omitempty"`

	// resources of the app container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// keyPrefix confines the app's Redis user to keys and Pub/Sub channels starting with
	// it (for example "session:" for the reference app, "spring:session:" for Spring
	// Session, "sess:" for connect-redis, "PHPREDIS_SESSION:" for PHP). Empty: every key.
	// Only with a store.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[-A-Za-z0-9_.:/{}@|=+]+$`
	KeyPrefix string `json:"keyPrefix,omitempty"`

	// workloadRef wires an existing Deployment or StatefulSet instead of creating one. The
	// operator neither owns nor deletes it: it adds only the wiring (the env of the wiring
	// contract, a Service Binding projection at $SERVICE_BINDING_ROOT/<cluster>-session,
	// its pod labels and rollout annotations) with server-side apply, and removes exactly
	// those fields when the app leaves the spec. A wired variable the workload sets itself
	// keeps the workload's value.
	// +optional
	WorkloadRef *WorkloadReference `json:"workloadRef,omitempty"`

	// template is the created Deployment's pod template (a PodTemplateSpec): volumes,
	// probes, sidecars, init containers, service account, node selection, tolerations,
	// image pull secrets, labels, annotations. See AppPodTemplate for what the operator
	// merges into it.
	// +optional
	Template *AppPodTemplate `json:"template,omitempty"`
}

// StoreSpec is the replicated Redis session store: one primary with Sentinel failover, or
// (shards) a Redis Cluster of several primaries, each with its replicas.
// +kubebuilder:validation:XValidation:rule="!has(self.clusterNodeTimeout) || has(self.shards)",message="spec.store.clusterNodeTimeout is only allowed with spec.store.shards: a store without shards fails over by its Sentinels (spec.store.sentinel.downAfter)",fieldPath=".clusterNodeTimeout",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="!has(self.shards) || !has(self.sentinel) || (!has(self.sentinel.pod) && !(has(self.sentinel.resources) && (has(self.sentinel.resources.limits) || has(self.sentinel.resources.requests))))",message="spec.store.sentinel.pod and spec.store.sentinel.resources are not allowed with spec.store.shards: a sharded store runs no Sentinels, Redis Cluster fails over by itself (spec.store.clusterNodeTimeout)",fieldPath=".sentinel",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="has(self.shards) == has(oldSelf.shards)",message="spec.store.shards cannot be added to or removed from an existing store: a Sentinel store and a Redis Cluster keep their data differently, and switching in place would lose the sessions; create a new SessionCluster for the other kind",fieldPath=".shards"
// +kubebuilder:validation:XValidation:rule="!has(self.shards) || !has(oldSelf.replicas) || !has(self.replicas) || self.replicas == oldSelf.replicas",message="spec.store.replicas cannot change while spec.store.shards is set: each shard's servers are consecutive pods of one StatefulSet, and a new count per shard would reassign them (change spec.store.shards instead, which moves slots live)",fieldPath=".replicas"
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicasToWrite) || !has(self.replicas) || self.minReplicasToWrite == 0 || self.minReplicasToWrite <= self.replicas - 2",message="spec.store.minReplicasToWrite must be 0 or at most spec.store.replicas - 2: when every replica is required, the primary stops taking writes as soon as one server dies, and a newly promoted primary refuses writes until the dead one is back",fieldPath=".minReplicasToWrite"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || !has(self.sentinel) || !has(self.sentinel.replicas) || self.sentinel.replicas >= 3",message="spec.store.sentinel.replicas must be at least 3 when spec.store.replicas is above 1: a failover needs a majority of the Sentinels, and with 1 or 2 losing one leaves no majority, so the store could never fail over",fieldPath=".sentinel.replicas"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || !has(self.sentinel) || !has(self.sentinel.replicas) || !has(self.sentinel.quorum) || self.sentinel.quorum < self.sentinel.replicas",message="spec.store.sentinel.quorum must be less than spec.store.sentinel.replicas when spec.store.replicas is above 1: with a quorum of every Sentinel, losing one Sentinel means the primary can never be agreed down, so the store could never fail over",fieldPath=".sentinel.quorum"
type StoreSpec struct {
	// image is any Redis 7+ or Valkey 8+ image holding redis-server, redis-sentinel,
	// redis-cli and a POSIX shell.
	// +optional
	// +kubebuilder:default="redis:7.4"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// imagePullPolicy of the Redis and Sentinel containers.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// replicas is the number of Redis servers: one primary, the rest replicas. With
	// shards it is the number of servers of each shard.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=9
	Replicas int32 `json:"replicas,omitempty"`

	// shards makes the store a Redis Cluster of this many shards, each a primary with
	// replicas - 1 replicas (shards x replicas servers in all), for session sets or write
	// rates one primary cannot carry. Redis Cluster's own failover replaces Sentinel
	// (clusterNodeTimeout), and clients must speak the cluster protocol (the apps receive
	// SESSION_REDIS_MODE=cluster and SESSION_REDIS_CLUSTER_NODES). Raising or lowering it
	// moves hash slots live. Absent: one primary with Sentinel failover. It cannot be
	// added to or removed from an existing store.
	// +optional
	// +kubebuilder:validation:Minimum=3
	// +kubebuilder:validation:Maximum=32
	Shards *int32 `json:"shards,omitempty"`

	// clusterNodeTimeout is how long a shard's primary must be unreachable before its
	// replicas fail it over (Redis cluster-node-timeout), as sentinel.downAfter is for a
	// store without shards. Only with shards; defaults to 5s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('10m'))",message="spec.store.clusterNodeTimeout must be between 1s and 10m"
	ClusterNodeTimeout *metav1.Duration `json:"clusterNodeTimeout,omitempty"`

	// sentinel configures the Sentinels that elect the primary. A store with shards runs
	// no Sentinels and ignores it.
	// +optional
	// +kubebuilder:default={}
	Sentinel SentinelSpec `json:"sentinel,omitempty"`

	// persistence keeps each server's data on a PersistentVolumeClaim; omit for memory only.
	// +optional
	Persistence *PersistenceSpec `json:"persistence,omitempty"`

	// minReplicasToWrite is how many replicas must be connected for the primary to accept
	// writes, which bounds what an isolated old primary can accept. It must leave one
	// server to lose (0, or at most replicas - 2): otherwise one dead server stops every
	// write. Defaults to 1 with 3 or more servers, else 0 (a 2-server store keeps writing
	// when either dies, at the price of an isolated primary accepting writes that a
	// failover then discards; acknowledged writes, made with WAIT 1, are not among them).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=8
	MinReplicasToWrite *int32 `json:"minReplicasToWrite,omitempty"`

	// maxMemory bounds the data set; past it, keys with a TTL are evicted first.
	// +optional
	// +kubebuilder:default="256Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('16Mi')) >= 0",message="spec.store.maxMemory must be at least 16Mi"
	MaxMemory *resource.Quantity `json:"maxMemory,omitempty"`

	// auth chooses the password clients use.
	// +optional
	// +kubebuilder:default={}
	Auth StoreAuth `json:"auth,omitempty"`

	// resources of each Redis container. Defaults derive from maxMemory.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// pod places the Redis servers' pods and sets what they carry; the Sentinels take it
	// too unless sentinel.pod is set.
	// +optional
	Pod *PodSettings `json:"pod,omitempty"`
}

// SentinelSpec configures Redis Sentinel.
// +kubebuilder:validation:XValidation:rule="!has(self.quorum) || !has(self.replicas) || self.quorum <= self.replicas",message="spec.store.sentinel.quorum must not exceed spec.store.sentinel.replicas",fieldPath=".quorum"
type SentinelSpec struct {
	// replicas is the number of Sentinels; an odd number of at least 3 survives one loss.
	// A store with replicas needs at least 3: a failover needs a majority of them.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=7
	Replicas int32 `json:"replicas,omitempty"`

	// quorum is how many Sentinels must agree that the primary is down. A store with
	// replicas needs it below replicas, so that losing one Sentinel still lets a failover
	// start.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=7
	Quorum int32 `json:"quorum,omitempty"`

	// downAfter is how long the primary must be unreachable before a Sentinel calls it down.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('10m'))",message="spec.store.sentinel.downAfter must be between 1s and 10m"
	DownAfter *metav1.Duration `json:"downAfter,omitempty"`

	// failoverTimeout bounds one failover attempt.
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('5s') && duration(self) <= duration('1h'))",message="spec.store.sentinel.failoverTimeout must be between 5s and 1h"
	FailoverTimeout *metav1.Duration `json:"failoverTimeout,omitempty"`

	// resources of each Sentinel container; by default 10m CPU and 32Mi requested, 64Mi
	// memory limit.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// pod places the Sentinels' pods and sets what they carry, instead of store.pod.
	// +optional
	Pod *PodSettings `json:"pod,omitempty"`
}

// PersistenceSpec keeps Redis data on PersistentVolumeClaims.
type PersistenceSpec struct {
	// size of each server's claim.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="spec.store.persistence.size must be at least 64Mi"
	Size resource.Quantity `json:"size"`

	// storageClassName of the claims; empty uses the cluster's default class.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`

	// deleteClaim deletes the claims, and the sessions on them, when the store is removed
	// or the SessionCluster is deleted. By default they are kept.
	// +optional
	DeleteClaim bool `json:"deleteClaim,omitempty"`
}

// AnnotationRotatePassword on a SessionCluster asks for new generated app passwords:
// set it to any new value (a date, a counter) and the operator rotates each app's
// password live, once per value. Changing the Secret named by store.auth.existingSecret
// rotates a user-provided password the same way.
const AnnotationRotatePassword = "session.sessionops.dev/rotate-password"

// StoreAuth chooses the apps' store passwords. Each app has its own Redis user; the
// replication, Sentinel and operator users always get generated passwords.
type StoreAuth struct {
	// existingSecret names a Secret in the same namespace holding the apps' password under
	// existingSecretKey; every app's user then shares that password. Empty: the operator
	// generates one password per app in <name>-store-auth.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$`
	ExistingSecret string `json:"existingSecret,omitempty"`

	// existingSecretKey is the key of the password in existingSecret.
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ExistingSecretKey string `json:"existingSecretKey,omitempty"`
}

// StickyMode is how a load balancer treats a pinned user when the pod set changes.
// +kubebuilder:validation:Enum=Balanced;Persistent
type StickyMode string

const (
	// StickyBalanced lets the load balancer re-pin users when pods are added.
	StickyBalanced StickyMode = "Balanced"
	// StickyPersistent keeps users on their pod for as long as it lives.
	StickyPersistent StickyMode = "Persistent"
)

// SameSite is the cookie's SameSite attribute.
// +kubebuilder:validation:Enum=Lax;Strict;None
type SameSite string

const (
	SameSiteLax    SameSite = "Lax"
	SameSiteStrict SameSite = "Strict"
	SameSiteNone   SameSite = "None"
)

// StickySpec configures cookie affinity at the load balancer.
// +kubebuilder:validation:XValidation:rule="!has(self.sameSite) || self.sameSite != 'None' || (has(self.secure) && self.secure)",message="spec.sticky.secure must be true when spec.sticky.sameSite is None: browsers drop such cookies otherwise",fieldPath=".secure"
type StickySpec struct {
	// cookieName is the affinity cookie's name.
	// +optional
	// +kubebuilder:default=route
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	CookieName string `json:"cookieName,omitempty"`

	// maxAge is the cookie's lifetime.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('8760h'))",message="spec.sticky.maxAge must be between 1s and 8760h"
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// mode is Balanced (re-pin users when pods are added) or Persistent (never re-pin).
	// Only ingress-nginx tells them apart (its affinity-mode); Traefik and HAProxy keep
	// a user on their pod for as long as it serves, and re-pin only when it is gone.
	// +optional
	// +kubebuilder:default=Balanced
	Mode StickyMode `json:"mode,omitempty"`

	// sameSite is the cookie's SameSite attribute.
	// +optional
	// +kubebuilder:default=Lax
	SameSite SameSite `json:"sameSite,omitempty"`

	// secure marks the cookie Secure. Defaults to true when the ingress has TLS.
	// +optional
	Secure *bool `json:"secure,omitempty"`

	// clientIP pins by client address on the app Services (Service sessionAffinity), for
	// clusters reached without an ingress.
	// +optional
	ClientIP *ClientIPAffinity `json:"clientIP,omitempty"`
}

// ClientIPAffinity configures Service.spec.sessionAffinity: ClientIP.
type ClientIPAffinity struct {
	// timeout of the affinity.
	// +optional
	// +kubebuilder:default="3h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="spec.sticky.clientIP.timeout must be between 1s and 24h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// IngressController names the controller whose annotation dialect expresses affinity.
// +kubebuilder:validation:Enum=IngressNginx;Traefik;HAProxy;GatewayAPI
type IngressController string

const (
	ControllerIngressNginx IngressController = "IngressNginx"
	ControllerTraefik      IngressController = "Traefik"
	ControllerHAProxy      IngressController = "HAProxy"
	ControllerGatewayAPI   IngressController = "GatewayAPI"
)

// IngressSpec exposes the apps.
// +kubebuilder:validation:XValidation:rule="self.controller != 'GatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",message="spec.ingress.parentRefs is required when spec.ingress.controller is GatewayAPI",fieldPath=".parentRefs",reason=FieldValueRequired
type IngressSpec struct {
	// host is the public host name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Host string `json:"host"`

	// className is the IngressClass (or, for GatewayAPI, unused).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClassName *string `json:"className,omitempty"`

	// controller chooses how cookie affinity is spelled.
	// +optional
	// +kubebuilder:default=IngressNginx
	Controller IngressController `json:"controller,omitempty"`

	// tls terminates HTTPS with a certificate Secret.
	// +optional
	TLS *IngressTLS `json:"tls,omitempty"`

	// annotations are merged into the Ingress (or HTTPRoute); the operator's affinity
	// annotations win.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`

	// parentRefs are the Gateways an HTTPRoute attaches to. Only for GatewayAPI.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	ParentRefs []GatewayParentRef `json:"parentRefs,omitempty"`
}

// IngressTLS names the certificate Secret.
type IngressTLS struct {
	// secretName holds tls.crt and tls.key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName"`
}

// GatewayParentRef names a Gateway.
type GatewayParentRef struct {
	// name of the Gateway.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// namespace of the Gateway; defaults to the SessionCluster's.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// sectionName is the Gateway listener.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SectionName string `json:"sectionName,omitempty"`
}

// DiscoveryMethod is how clustered app pods find each other.
// +kubebuilder:validation:Enum=DNS;KubernetesAPI
type DiscoveryMethod string

const (
	// DiscoveryDNS resolves the headless peer Service.
	DiscoveryDNS DiscoveryMethod = "DNS"
	// DiscoveryKubernetesAPI lists pods through the Kubernetes API.
	DiscoveryKubernetesAPI DiscoveryMethod = "KubernetesAPI"
)

// ClusteringSpec configures peer discovery for Clustered mode.
type ClusteringSpec struct {
	// port the app pods replicate sessions on.
	// +optional
	// +kubebuilder:default=4000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// discovery is DNS (the headless peer Service) or KubernetesAPI (pods listed through
	// the API, with a ServiceAccount and Role).
	// +optional
	// +kubebuilder:default=DNS
	Discovery DiscoveryMethod `json:"discovery,omitempty"`
}

// SessionClusterStatus is what the operator observed.
type SessionClusterStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, StoreReady, AppsReady, RoutingReady, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// store describes the Redis store, when there is one.
	// +optional
	Store *StoreStatus `json:"store,omitempty"`

	// apps describes each app Deployment.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Apps []AppStatus `json:"apps,omitempty"`

	// url is where users reach the apps, when there is an ingress.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	URL string `json:"url,omitempty"`

	// binding names the Service Binding Secret holding the store's coordinates.
	// +optional
	Binding *BindingReference `json:"binding,omitempty"`
}

// StoreStatus describes the Redis store.
type StoreStatus struct {
	// primary is the pod Sentinel names as the primary; empty with shards, where each
	// shard has its own (shards).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Primary string `json:"primary,omitempty"`

	// readyReplicas counts ready Redis servers, the primary included.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// sentinelsReady counts ready Sentinels.
	// +optional
	SentinelsReady int32 `json:"sentinelsReady"`

	// lastFailover is the most recent change of primary the operator saw.
	// +optional
	LastFailover *FailoverRecord `json:"lastFailover,omitempty"`

	// rollout is where an operator-driven change of the servers (a new template, or a
	// scale) stands; absent when every server runs the current template.
	// +optional
	Rollout *StoreRollout `json:"rollout,omitempty"`

	// claims is where the servers' PersistentVolumeClaims stand against
	// spec.store.persistence.size; absent without persistence.
	// +optional
	Claims *ClaimsStatus `json:"claims,omitempty"`

	// usersRevision identifies the Redis ACL users (names, rules, accepted password
	// hashes) that every running server and Sentinel holds; it follows the store's users
	// Secret once the operator has applied it to them live.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UsersRevision string `json:"usersRevision,omitempty"`

	// shards are the Redis Cluster's shards as the cluster reports them, by index; only
	// with spec.store.shards.
	// +optional
	// +listType=map
	// +listMapKey=index
	// +kubebuilder:validation:MaxItems=64
	Shards []ShardStatus `json:"shards,omitempty"`

	// slotsCovered counts the hash slots, of 16384, that a shard serves; only with
	// spec.store.shards. Below 16384 some sessions cannot be read or written.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16384
	SlotsCovered *int32 `json:"slotsCovered,omitempty"`

	// passwordRotation is the most recent password rotation: started when a password
	// changed, finished when no running app pod uses an old password any more and every
	// server and Sentinel has dropped it.
	// +optional
	PasswordRotation *PasswordRotation `json:"passwordRotation,omitempty"`
}

// ShardStatus is one shard of a Redis Cluster store.
type ShardStatus struct {
	// index of the shard.
	// +required
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`

	// primary is the pod that holds the shard's slots as its primary. While that pod is
	// failing and no replica has taken over yet, it is still named here (the cluster still
	// routes the slots to it); empty only before the shard has a primary.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Primary string `json:"primary,omitempty"`

	// replicas counts the servers replicating the shard's primary.
	// +optional
	Replicas int32 `json:"replicas"`

	// slots counts the hash slots the shard serves.
	// +optional
	Slots int32 `json:"slots"`

	// lastFailover is the most recent change of the shard's primary the operator saw.
	// +optional
	LastFailover *FailoverRecord `json:"lastFailover,omitempty"`
}

// PasswordRotation describes one rotation of the apps' store passwords.
type PasswordRotation struct {
	// startedAt is when the operator first accepted a new password.
	// +required
	StartedAt metav1.Time `json:"startedAt"`

	// finishedAt is when the old passwords were dropped; absent while the rotation runs.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`

	// users whose password is (or was) being rotated.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=64
	Users []string `json:"users,omitempty"`

	// phase is AddingPassword (the new password is being added to every server and
	// Sentinel), RollingApps (the apps move to it), DroppingPassword (the old one is being
	// removed) or Finished.
	// +optional
	Phase RotationPhase `json:"phase,omitempty"`
}

// RolloutStep is what an operator-driven rollout of the servers does next.
// +kubebuilder:validation:Enum=Wait;ScaleTo;DeletePod;Switchover
type RolloutStep string

const (
	// RolloutWait: the store must settle first (a pod not ready, a replica behind, a
	// failover under way); the message says on what.
	RolloutWait RolloutStep = "Wait"
	// RolloutScaleTo: the servers' StatefulSet is being resized.
	RolloutScaleTo RolloutStep = "ScaleTo"
	// RolloutDeletePod: a server is being replaced at the current template.
	RolloutDeletePod RolloutStep = "DeletePod"
	// RolloutSwitchover: the primary is being handed over to an updated replica.
	RolloutSwitchover RolloutStep = "Switchover"
)

// StoreRollout is the next step of an operator-driven rollout of the servers: replicas
// first, one at a time, then one planned switchover, then the old primary.
type StoreRollout struct {
	// step is what the operator does next.
	// +required
	Step RolloutStep `json:"step"`

	// message says which pod, and why (or what it waits for).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// ClaimsStatus is where a growth of the servers' claims stands. The operator asks each
// claim for the new size and asks again until every claim has it.
type ClaimsStatus struct {
	// size every claim should have.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Size string `json:"size"`

	// resized counts claims whose capacity has reached size.
	// +optional
	Resized int32 `json:"resized"`

	// pending counts claims still asked for (or refusing) the size, or whose volume has not
	// grown yet.
	// +optional
	Pending int32 `json:"pending"`

	// message says why a claim has not grown, when one has not.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// RotationPhase is where a password rotation stands.
// +kubebuilder:validation:Enum=AddingPassword;RollingApps;DroppingPassword;Finished
type RotationPhase string

const (
	RotationAddingPassword   RotationPhase = "AddingPassword"
	RotationRollingApps      RotationPhase = "RollingApps"
	RotationDroppingPassword RotationPhase = "DroppingPassword"
	RotationFinished         RotationPhase = "Finished"
)

// FailoverRecord is one change of primary.
type FailoverRecord struct {
	// time the new primary was seen.
	// +required
	Time metav1.Time `json:"time"`

	// from is the old primary.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	From string `json:"from,omitempty"`

	// to is the new primary.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	To string `json:"to,omitempty"`

	// duration from when the old primary was last seen healthy to the switch, when known.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// AppStatus describes one app Deployment.
type AppStatus struct {
	// name of the app.
	// +required
	// +kubebuilder:validation:MaxLength=20
	Name string `json:"name"`

	// replicas desired.
	// +optional
	Replicas int32 `json:"replicas"`

	// readyReplicas of the Deployment.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// updatedReplicas of the Deployment: pods on its current template. Below replicas
	// while a rollout is under way or stalled.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`

	// workload is the app's workload, Kind/name: the Deployment the operator created or
	// the one workloadRef names.
	// +optional
	// +kubebuilder:validation:MaxLength=300
	Workload string `json:"workload,omitempty"`

	// message says why a wired workload is not wired: it does not exist, or another
	// SessionCluster wires it.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`

	// userSetEnv lists the wired variables the workload sets itself; the workload's values
	// win and the operator leaves them alone.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	UserSetEnv []string `json:"userSetEnv,omitempty"`
}

// BindingReference names a Service Binding Secret.
type BindingReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SessionClusterList is a list of SessionClusters.
// +kubebuilder:object:root=true
type SessionClusterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SessionCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SessionCluster{}, &SessionClusterList{})
}
