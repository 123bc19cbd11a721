package v1alpha1

// Condition types reported in status.conditions.
const (
	// ConditionReady is True when everything the spec asks for is ready to serve users.
	ConditionReady = "Ready"
	// ConditionStoreReady is True when exactly one server is primary, every Sentinel that
	// answers names it, it takes writes (the Sentinels do not see it down), and every
	// server and Sentinel is ready.
	ConditionStoreReady = "StoreReady"
	// ConditionAppsReady is True when every app Deployment has its ready replicas.
	ConditionAppsReady = "AppsReady"
	// ConditionRoutingReady is True when the Ingress or HTTPRoute exists, or none is asked for.
	ConditionRoutingReady = "RoutingReady"
	// ConditionDegraded is True when the operator cannot make the cluster match its spec.
	ConditionDegraded = "Degraded"
)

// Condition reasons. They are UpperCamel and stable: users and alerts match on them.
const (
	// ReasonReady: the condition holds.
	ReasonReady = "Ready"
	// ReasonProgressing: children exist and are starting.
	ReasonProgressing = "Progressing"
	// ReasonNotRequired: the spec asks for nothing this condition covers.
	ReasonNotRequired = "NotRequired"

	// ReasonStoreNotReady: fewer Redis servers are ready than asked for.
	ReasonStoreNotReady = "StoreNotReady"
	// ReasonSentinelsNotReady: fewer Sentinels are ready than the quorum needs.
	ReasonSentinelsNotReady = "SentinelsNotReady"
	// ReasonNoPrimary: no server takes writes as the primary: no Sentinel names one, or
	// the one they name is down (most of them see it s_down or unreachable, or one reports
	// it o_down, or it has not answered their pings for max(2s, downAfter/2)).
	ReasonNoPrimary = "NoPrimary"
	// ReasonSentinelsDisagree: the Sentinels that answered do not all name the same
	// primary (a failover being announced, or a Sentinel that lost track of the store).
	ReasonSentinelsDisagree = "SentinelsDisagree"
	// ReasonMultiplePrimaries: a server other than the primary the Sentinels name reports
	// role master (an old primary back after a freeze or a partition, before Sentinel
	// turns it into a replica); clients that reach it may write where nobody reads.
	ReasonMultiplePrimaries = "MultiplePrimaries"
	// ReasonSentinelUnreachable: the operator could not ask any Sentinel.
	ReasonSentinelUnreachable = "SentinelUnreachable"

	// ReasonClusterUnreachable: the operator reached no server of a sharded store.
	ReasonClusterUnreachable = "ClusterUnreachable"
	// ReasonClusterNotOK: a server of a sharded store reports cluster_state:fail.
	ReasonClusterNotOK = "ClusterStateFail"
	// ReasonSlotsUncovered: some of a sharded store's 16384 hash slots have no primary;
	// the sessions in them can be neither read nor written.
	ReasonSlotsUncovered = "SlotsUncovered"

	// ReasonAppsNotReady: some app Deployment lacks ready replicas.
	ReasonAppsNotReady = "AppsNotReady"
	// ReasonAppRolloutStalled: an app Deployment's rollout exceeded its progress deadline;
	// old pods may still serve, but the spec's template does not.
	ReasonAppRolloutStalled = "AppRolloutStalled"
	// ReasonWorkloadNotWired: a workload an app's workloadRef names does not exist, lacks
	// a named container, or is wired by another SessionCluster.
	ReasonWorkloadNotWired = "WorkloadNotWired"

	// ReasonGatewayAPIMissing: the spec asks for an HTTPRoute but the Gateway API CRDs are not installed.
	ReasonGatewayAPIMissing = "GatewayAPINotInstalled"
	// ReasonSessionPersistenceUnsupported: the HTTPRoute exists but cannot pin users: the
	// installed HTTPRoute CRD drops sessionPersistence (the standard channel), or the
	// Gateway's class does not list session persistence among its supported features.
	ReasonSessionPersistenceUnsupported = "SessionPersistenceUnsupported"
	// ReasonRoutingPending: the Ingress has no address in status.loadBalancer yet (no
	// ingress controller of its class has taken it), or a parent Gateway has not yet
	// reported the HTTPRoute Accepted with its references resolved.
	ReasonRoutingPending = "RoutingPending"
	// ReasonRouteRejected: a parent Gateway reports the HTTPRoute Accepted=False or
	// ResolvedRefs=False.
	ReasonRouteRejected = "RouteRejected"

	// ReasonAsExpected: nothing is degraded.
	ReasonAsExpected = "AsExpected"
	// ReasonNameConflict: an object the operator must create exists and belongs to someone else.
	ReasonNameConflict = "NameConflict"
	// ReasonAuthSecretInvalid: auth.existingSecret is missing or lacks the key.
	ReasonAuthSecretInvalid = "AuthSecretInvalid"
	// ReasonUsersSecretMissing: the store runs but the Secret with its internal users'
	// passwords is gone, so they cannot be recovered.
	ReasonUsersSecretMissing = "UsersSecretMissing"
	// ReasonInvalidSpec: the spec passed the CRD's validation but cannot be honoured (an
	// app whose template names no image: a rule the CRD's CEL cost budget cannot hold).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonApplyFailed: writing a child failed.
	ReasonApplyFailed = "ApplyFailed"
)

// Event reasons, for transitions a user would act on.
const (
	EventFailover      = "Failover"
	EventNameConflict  = "NameConflict"
	EventAuthSecret    = "AuthSecretInvalid"
	EventStoreRemoved  = "StoreRemoved"
	EventClaimsDeleted = "ClaimsDeleted"
	// EventStatefulSetReplaced: a store StatefulSet was recreated around its running pods.
	EventStatefulSetReplaced = "StatefulSetReplaced"
	// EventClaimNotExpanded: a store claim could not grow to spec.store.persistence.size.
	EventClaimNotExpanded = "ClaimNotExpanded"
	// EventStorePodReplaced: the operator deleted a store pod so the StatefulSet (OnDelete)
	// makes it again from the current template.
	EventStorePodReplaced = "StorePodReplaced"
	// EventSwitchover: a planned handover of the primary during a rollout or scale-down.
	EventSwitchover = "Switchover"
	// EventPasswordRotated: the apps run on new store passwords and the old ones are gone.
	EventPasswordRotated = "PasswordRotated"
)
