package render

import (
	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Label and annotation keys the operator writes.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// LabelApp names the app a Deployment, Service or pod belongs to.
	LabelApp = "session.sessionops.dev/app"
	// LabelRole is kept on Redis pods by the operator: primary or replica. The primary
	// Service selects on it.
	LabelRole = "session.sessionops.dev/role"
	// LabelClient, set to a SessionCluster's name on any pod, lets that pod through the
	// store's NetworkPolicy (for workloads that mount the binding Secret).
	LabelClient = "session.sessionops.dev/client"

	// AnnotationSpecHash on a child is the hash of what the operator last applied.
	AnnotationSpecHash = "session.sessionops.dev/spec-hash"
	// AnnotationWiringHash on a pod template changes whenever the wiring does, so pods roll.
	AnnotationWiringHash = "session.sessionops.dev/wiring-hash"
	// AnnotationPasswordVersion on an app's pod template tags the store password its pods
	// start with (PasswordVersion): the operator drops an old password only when no
	// running pod carries its version.
	AnnotationPasswordVersion = "session.sessionops.dev/password-version"
	// AnnotationConfigHash on the store's pod templates changes with their configuration.
	AnnotationConfigHash = "session.sessionops.dev/config-hash"

	// ManagedBy is the value of app.kubernetes.io/managed-by on every child.
	ManagedBy = "session-operator"
	// PartOf is the value of app.kubernetes.io/part-of on every child.
	PartOf = "session-operator"

	RolePrimary = "primary"
	RoleReplica = "replica"
)

// Component values of app.kubernetes.io/component.
const (
	ComponentStore    = "store"
	ComponentSentinel = "sentinel"
	ComponentApp      = "app"
	ComponentAuth     = "auth"
	ComponentBinding  = "binding"
	ComponentNetwork  = "network"
	ComponentRouting  = "routing"
	ComponentPeers    = "peers"
)

// Labels are the standard labels of one child of sc. name is the app.kubernetes.io/name
// value: what runs ("redis", an app's name) or, for supporting objects, "session-cluster".
func Labels(sc *sessionv1.SessionCluster, component, name string) map[string]string {
	return map[string]string{
		LabelName:      name,
		LabelInstance:  sc.Name,
		LabelComponent: component,
		LabelPartOf:    PartOf,
		LabelManagedBy: ManagedBy,
	}
}

// Selector selects the pods of one component of sc. It never changes for a given
// SessionCluster, because workload selectors are immutable.
func Selector(sc *sessionv1.SessionCluster, component string) map[string]string {
	return map[string]string{
		LabelInstance:  sc.Name,
		LabelComponent: component,
		LabelManagedBy: ManagedBy,
	}
}

// AppSelector selects the pods of one app.
func AppSelector(sc *sessionv1.SessionCluster, app string) map[string]string {
	s := Selector(sc, ComponentApp)
	s[LabelApp] = app
	return s
}

// InstanceSelector selects every child of sc.
func InstanceSelector(sc *sessionv1.SessionCluster) map[string]string {
	return map[string]string{LabelInstance: sc.Name, LabelManagedBy: ManagedBy}
}

func merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
