package render

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// DefaultClusterDomain is the DNS domain of a cluster that says nothing else.
const DefaultClusterDomain = "cluster.local"

// Options are the operator-wide settings the objects depend on.
type Options struct {
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain string
	// OperatorPodLabels select the operator's own pods, which the store's NetworkPolicy admits.
	OperatorPodLabels map[string]string
	// OperatorNamespace is where those pods run: the NetworkPolicy admits them from there
	// only. Empty (an operator outside the cluster) admits the labels from any namespace.
	OperatorNamespace string
}

// DefaultOperatorPodLabels select the pods of the operator installed by its chart or kustomize.
var DefaultOperatorPodLabels = map[string]string{LabelName: "session-operator"}

// Inputs are the facts the operator reads from the cluster before rendering.
type Inputs struct {
	// AppPasswords are the apps' store passwords by app name: generated, one per app, or
	// with store.auth.existingSecret the user's, the same for every app. They go into the
	// generated auth Secret and the binding Secret, and nowhere else.
	AppPasswords map[string]string
	// Internal are the operator's, replication's and the Sentinels' passwords; they go
	// into the users Secret only.
	Internal InternalPasswords
	// Accepted are the password hashes each app user (AppUser) accepts: during a rotation
	// the old and the new. A user missing here accepts its current password only.
	Accepted map[string][]string
	// PodPasswordVersions are, by app name, the password version (PasswordVersion) the
	// app's pods are started with: the operator moves it to a new password only once every
	// server and Sentinel accepts it, which rolls the app. Missing: the current password's.
	PodPasswordVersions map[string]string
	// RotationHandled is the last rotate-password annotation value acted on, recorded on
	// the generated auth Secret.
	RotationHandled string
	// GatewayAPI is true when the Gateway API CRDs are installed.
	GatewayAPI bool
	// GatewaySessionPersistence is true when the installed HTTPRoute schema keeps a rule's
	// sessionPersistence. Where it does not, the field is left out of the route: the
	// apiserver would drop it anyway, and asking for it would rewrite the route every pass.
	GatewaySessionPersistence bool
}

// Desired is every child a SessionCluster needs, in the order they should be applied:
// what others refer to (Secrets, configuration, Services) before what refers to them.
type Desired struct {
	Objects []client.Object
	// Users are the store's ACL users, which the operator also applies live; nil without
	// a store.
	Users *Users
	// Blocked lists children the spec asks for that cannot be made, with the reason.
	Blocked []string
	// Wired are the users' workloads to wire (apps with a workloadRef). They are not
	// children: the operator neither owns nor creates them.
	Wired []WiredWorkload
}

// Render computes the desired children of sc. The spec is defaulted first, so an object
// the apiserver never defaulted renders the same as one it did.
func Render(sc *sessionv1.SessionCluster, opts Options, in Inputs) (*Desired, error) {
	spec := sc.Spec.WithDefaults()
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	if opts.OperatorPodLabels == nil {
		opts.OperatorPodLabels = DefaultOperatorPodLabels
	}
	b := &builder{sc: sc, spec: &spec, names: NamesFor(sc, opts.ClusterDomain), opts: opts, in: in}
	d := &Desired{}
	add := func(objs ...client.Object) { d.Objects = append(d.Objects, objs...) }

	if spec.HasStore() {
		for _, app := range spec.Apps {
			if in.AppPasswords[app.Name] == "" {
				return nil, fmt.Errorf("rendering store: no password for app %s", app.Name)
			}
		}
		if !in.Internal.Complete() {
			return nil, fmt.Errorf("rendering store: missing a password of the operator, replication or sentinel user")
		}
		add(b.authSecret())
		users := b.storeUsers()
		d.Users = &users
		add(b.usersSecret(users), b.bindingSecret(), b.storeConfig())
		if spec.Sharded() {
			// No primary Service: each shard has its own primary, and a cluster client
			// finds them from the slot map; no Sentinels: Redis Cluster fails over itself.
			add(b.storeHeadlessService(), b.clusterStatefulSet(), b.storePDB(), b.storeNetworkPolicy())
		} else {
			add(b.storeHeadlessService(), b.storePrimaryService(), b.sentinelService())
			add(b.storeStatefulSet(), b.sentinelStatefulSet())
			add(b.storePDB(), b.sentinelPDB(), b.storeNetworkPolicy())
		}
	}
	for i := range spec.Apps {
		app := &spec.Apps[i]
		if spec.Mode == sessionv1.ModeClustered {
			add(b.peerService(app))
			if b.apiDiscovery() {
				add(b.peerServiceAccount(app), b.peerRole(app), b.peerRoleBinding(app))
			}
		}
		add(b.appService(app))
		if app.WorkloadRef == nil {
			if err := appImageSet(app); err != nil {
				return nil, err
			}
			add(b.appDeployment(app))
		}
		if pdb := b.appPDB(app); pdb != nil {
			add(pdb)
		}
	}
	d.Wired = b.wiredWorkloads()
	if in := spec.Ingress; in != nil {
		switch {
		case in.Controller != sessionv1.ControllerGatewayAPI:
			for i := range spec.Apps {
				add(b.ingress(&spec.Apps[i]))
			}
		case b.in.GatewayAPI:
			add(b.httpRoute())
		default:
			d.Blocked = append(d.Blocked, "spec.ingress.controller is GatewayAPI but the Gateway API CRDs (gateway.networking.k8s.io/v1 HTTPRoute) are not installed; install them and the route follows")
		}
	}
	return d, nil
}

// builder carries what every object builder needs.
type builder struct {
	sc    *sessionv1.SessionCluster
	spec  *sessionv1.SessionClusterSpec
	names Names
	opts  Options
	in    Inputs
}

// meta is the ObjectMeta of a child: its name, the standard labels and the controller
// owner reference that makes it garbage-collected with its SessionCluster.
func (b *builder) meta(name, component, appName string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       b.sc.Namespace,
		Labels:          Labels(b.sc, component, appName),
		OwnerReferences: []metav1.OwnerReference{OwnerReference(b.sc)},
	}
}

// OwnerReference is the controller reference every child carries.
func OwnerReference(sc *sessionv1.SessionCluster) metav1.OwnerReference {
	return *metav1.NewControllerRef(sc, sessionv1.GroupVersion.WithKind("SessionCluster"))
}
