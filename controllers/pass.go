package controllers

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
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

	// requeueSoon asks for another pass shortly: a child is waiting on the garbage collector.
	requeueSoon bool

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
