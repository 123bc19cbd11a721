package controllers

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/rediscluster"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// pass is everything one reconcile learns about a SessionCluster. Steps fill it in; the
// status is computed from it once, at the end.
type pass struct {
	sc   *sessionv1.SessionCluster
	spec sessionv1.SessionClusterSpec // defaulted
	now  time.Time

	inputs  render.Inputs
	desired *render.Desired

	// accepted are the password hashes each app user accepted before this pass (from the
	// users Secret); usersRevision is the users rendered now, usersLive those every
	// server and Sentinel holds; rotation is where the latest password rotation stands.
	accepted      map[string][]string
	usersRevision string
	usersLive     string
	rotation      *sessionv1.PasswordRotation

	// claimed are the children created by a check before applyChildren's (see
	// checkChild), taken back with its own when a conflict stops the pass; written are
	// the children already written this pass, by kind/name, with the intent written.
	claimed []*apply.Claimed
	written map[string]string

	// problem stops the pass before anything is written: the spec cannot be honoured as it
	// stands (a stranger's object in the way, a missing password Secret).
	problem *problem
	// failed is the step whose error ended the pass.
	failed    string
	failedErr error

	storeSet    *appsv1.StatefulSet
	sentinelSet *appsv1.StatefulSet
	// storeObserved is set when observeStore read the store's workloads this pass.
	storeObserved bool
	observed      *store.Observation
	observeErr    error
	deployments   map[string]*appsv1.Deployment

	// storeReplicas, when set, overrides the servers' StatefulSet size: a scale-down
	// waits for the primary to move (planStore).
	storeReplicas *int32
	// rollout is where an operator-driven change of the servers stands; nil when none.
	rollout *sessionv1.StoreRollout
	// cluster is what a sharded store's Redis Cluster reported this pass (planCluster or
	// observeCluster); clusterErr why it could not be asked, clusterWaiting what the
	// engine waits for before it is asked.
	cluster        *rediscluster.State
	clusterErr     error
	clusterWaiting string
	// claims is where a growth of the servers' claims stands; nil without persistence.
	claims *sessionv1.ClaimsStatus

	// requeueSoon asks for another pass shortly: a child is waiting on the garbage collector.
	requeueSoon bool

	// wired is, by app name, what wiring each workloadRef found; waitingForWorkload is
	// set while a named workload does not exist (nothing the operator watches says when
	// it appears).
	wired              map[string]*wiredState
	waitingForWorkload bool

	// routing is set by the routing step: false with a reason when routing cannot be made.
	routingBlocked string
	// routingUnsupported says why the route exists but cannot pin users (set by observeRouting).
	routingUnsupported string
	// routing is what the ingress controller or the Gateway reported (observeRoutingStatus).
	routing routingVerdict
	url     string
}

// problem is a reason the operator refuses to act, reported as Degraded and an event.
type problem struct {
	reason  string
	message string
}
