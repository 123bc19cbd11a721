package controllers

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// failover is a primary change this pass noticed.
type failover struct {
	from, to string
	duration time.Duration
}

// computeStatus derives the whole status from what one pass learned. It is the only place
// status is decided; it reads the previous status only to keep condition transition times
// and the last failover.
func computeStatus(p *pass, domain string) (sessionv1.SessionClusterStatus, *failover) {
	prev := p.sc.Status
	st := sessionv1.SessionClusterStatus{
		ObservedGeneration: p.sc.Generation,
		Conditions:         append([]metav1.Condition(nil), prev.Conditions...),
		URL:                p.url,
	}
	set := func(t string, ok bool, reason, format string, args ...any) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: fmt.Sprintf(format, args...),
			ObservedGeneration: p.sc.Generation, LastTransitionTime: metav1.NewTime(p.now),
		})
	}

	// Degraded: the operator cannot do what the spec says.
	switch {
	case p.problem != nil:
		set(sessionv1.ConditionDegraded, true, p.problem.reason, "%s", p.problem.message)
	case p.failedErr != nil:
		set(sessionv1.ConditionDegraded, true, sessionv1.ReasonApplyFailed, "%s failed: %v", p.failed, p.failedErr)
	default:
		set(sessionv1.ConditionDegraded, false, sessionv1.ReasonAsExpected, "Children match the spec")
	}

	var fo *failover
	if p.spec.HasStore() {
		st.Store, fo = storeStatus(p)
		switch {
		case p.storeObserved && p.spec.Sharded():
			ok, reason, msg := clusterReadiness(p, st.Store)
			set(sessionv1.ConditionStoreReady, ok, reason, "%s", msg)
		case p.storeObserved:
			ok, reason, msg := storeReadiness(p, st.Store)
			set(sessionv1.ConditionStoreReady, ok, reason, "%s", msg)
		case prev.Store != nil:
			// An earlier step failed before the Sentinels could be asked (no password to ask
			// them with): keep the last observation and its condition, with fresh counts,
			// rather than report an empty store.
			counts := st.Store
			st.Store = prev.Store.DeepCopy()
			st.Store.ReadyReplicas, st.Store.SentinelsReady = counts.ReadyReplicas, counts.SentinelsReady
		}
		if meta.FindStatusCondition(st.Conditions, sessionv1.ConditionStoreReady) == nil {
			set(sessionv1.ConditionStoreReady, false, sessionv1.ReasonProgressing, "Store not observed yet")
		}
		st.Binding = &sessionv1.BindingReference{Name: render.NamesFor(p.sc, domain).Binding()}
	} else {
		set(sessionv1.ConditionStoreReady, true, sessionv1.ReasonNotRequired, "Mode %s with no store", p.spec.Mode)
	}

	st.Apps = appStatuses(p)
	var lagging, stalled []string
	for _, a := range st.Apps {
		if a.ReadyReplicas < a.Replicas {
			lagging = append(lagging, fmt.Sprintf("%s %d/%d", a.Name, a.ReadyReplicas, a.Replicas))
		}
		if d := p.deployments[a.Name]; d != nil && rolloutStalled(d) {
			stalled = append(stalled, fmt.Sprintf("%s (%d/%d pods on the current template)", a.Name, a.UpdatedReplicas, a.Replicas))
		}
	}
	switch {
	case p.deployments == nil && meta.FindStatusCondition(st.Conditions, sessionv1.ConditionAppsReady) != nil:
		// Not observed this pass: keep what the last pass reported.
	case p.deployments == nil:
		set(sessionv1.ConditionAppsReady, false, sessionv1.ReasonAppsNotReady, "Apps not observed yet")
	case wiringTrouble(st.Apps) != "":
		set(sessionv1.ConditionAppsReady, false, sessionv1.ReasonWorkloadNotWired, "%s", wiringTrouble(st.Apps))
	case len(stalled) > 0:
		set(sessionv1.ConditionAppsReady, false, sessionv1.ReasonAppRolloutStalled, "Rollout exceeded its progress deadline: %s", strings.Join(stalled, ", "))
	case len(lagging) > 0:
		set(sessionv1.ConditionAppsReady, false, sessionv1.ReasonAppsNotReady, "Ready replicas: %s", strings.Join(lagging, ", "))
	default:
		set(sessionv1.ConditionAppsReady, true, sessionv1.ReasonReady, "All %d apps have their ready replicas", len(st.Apps))
	}

	switch {
	case p.spec.Ingress == nil:
		set(sessionv1.ConditionRoutingReady, true, sessionv1.ReasonNotRequired, "No spec.ingress")
	case p.routingBlocked != "":
		set(sessionv1.ConditionRoutingReady, false, sessionv1.ReasonGatewayAPIMissing, "%s", p.routingBlocked)
	case p.routingUnsupported != "":
		set(sessionv1.ConditionRoutingReady, false, sessionv1.ReasonSessionPersistenceUnsupported, "%s", p.routingUnsupported)
	case p.routing.rejected != "":
		set(sessionv1.ConditionRoutingReady, false, sessionv1.ReasonRouteRejected, "%s", p.routing.rejected)
	case p.routing.pending != "":
		set(sessionv1.ConditionRoutingReady, false, sessionv1.ReasonRoutingPending, "%s", p.routing.pending)
	default:
		set(sessionv1.ConditionRoutingReady, true, sessionv1.ReasonReady, "Routing to %s", p.url)
	}

	// Ready summarises the others, naming the first that holds it back.
	ready, reason, msg := true, sessionv1.ReasonReady, "Sessions are served in "+string(p.spec.Mode)+" mode"
	// Most actionable first: what the user must fix, then what is still starting.
	for _, t := range []string{sessionv1.ConditionDegraded, sessionv1.ConditionRoutingReady, sessionv1.ConditionStoreReady, sessionv1.ConditionAppsReady} {
		c := meta.FindStatusCondition(st.Conditions, t)
		bad := c.Status != metav1.ConditionTrue
		if t == sessionv1.ConditionDegraded {
			bad = c.Status == metav1.ConditionTrue
		}
		if bad {
			ready, reason, msg = false, c.Reason, c.Message
			break
		}
	}
	set(sessionv1.ConditionReady, ready, reason, "%s", msg)
	return st, fo
}

// storeStatus reports the servers and Sentinels, and notices a change of primary.
func storeStatus(p *pass) (*sessionv1.StoreStatus, *failover) {
	out := &sessionv1.StoreStatus{}
	if prev := p.sc.Status.Store; prev != nil {
		out.Primary = prev.Primary
		out.LastFailover = prev.LastFailover.DeepCopy()
	}
	out.Rollout, out.Claims = p.rollout, p.claims
	out.ReadyReplicas = readyOf(p.storeSet)
	out.SentinelsReady = readyOf(p.sentinelSet)
	if prev := p.sc.Status.Store; prev != nil {
		out.UsersRevision = prev.UsersRevision
		out.PasswordRotation = prev.PasswordRotation.DeepCopy()
	}
	if p.usersLive != "" {
		out.UsersRevision = p.usersLive
	}
	if p.rotation != nil {
		out.PasswordRotation = p.rotation
	}
	if p.spec.Sharded() {
		return out, shardStatuses(p, out)
	}
	if p.observed == nil || p.observed.PrimaryHost == "" {
		return out, nil
	}
	primary := render.PodFromHost(p.observed.PrimaryHost)
	var fo *failover
	if out.Primary != "" && out.Primary != primary {
		fo = &failover{from: out.Primary, to: primary}
		if sw := p.observed.LastSwitch; sw != nil && render.PodFromHost(sw.To) == primary {
			fo.duration = sw.Duration
		}
		out.LastFailover = &sessionv1.FailoverRecord{Time: metav1.NewTime(p.now), From: fo.from, To: fo.to}
		if fo.duration > 0 {
			out.LastFailover.Duration = &metav1.Duration{Duration: fo.duration.Round(100 * time.Millisecond)}
		}
	}
	out.Primary = primary
	return out, fo
}

func storeReadiness(p *pass, s *sessionv1.StoreStatus) (bool, string, string) {
	want, sentinels := p.spec.Store.Replicas, p.spec.Store.Sentinel.Replicas
	switch {
	case p.storeSet == nil || p.sentinelSet == nil:
		return false, sessionv1.ReasonProgressing, "Store is being created"
	case p.observeErr != nil && (p.observed == nil || p.observed.SentinelsReachable == 0):
		return false, sessionv1.ReasonSentinelUnreachable, "No Sentinel answered: " + p.observeErr.Error()
	case p.observed == nil || p.observed.PrimaryHost == "":
		return false, sessionv1.ReasonNoPrimary, "No Sentinel names a primary"
	}
	// What the Sentinels say about the primary comes before the pods' readiness: a frozen
	// or vanished primary keeps its pod Ready until the kubelet's probes fail several times.
	h := p.observed.Health
	switch {
	case h.PrimaryDown != "":
		return false, sessionv1.ReasonNoPrimary, fmt.Sprintf("The Sentinels name %s, but it cannot take writes: %s", s.Primary, h.PrimaryDown)
	case h.Agreeing < p.observed.SentinelsReachable:
		return false, sessionv1.ReasonSentinelsDisagree, fmt.Sprintf("%d of %d Sentinels that answered name %s as the primary", h.Agreeing, p.observed.SentinelsReachable, s.Primary)
	case len(h.OtherPrimaries) > 0:
		others := make([]string, 0, len(h.OtherPrimaries))
		for _, o := range h.OtherPrimaries {
			others = append(others, render.PodFromHost(o))
		}
		return false, sessionv1.ReasonMultiplePrimaries, fmt.Sprintf("%s reports role master besides the primary %s", strings.Join(others, ", "), s.Primary)
	case s.ReadyReplicas < want:
		return false, sessionv1.ReasonStoreNotReady, fmt.Sprintf("%d/%d Redis servers ready, primary %s", s.ReadyReplicas, want, s.Primary)
	case s.SentinelsReady < sentinels:
		return false, sessionv1.ReasonSentinelsNotReady, fmt.Sprintf("%d/%d Sentinels ready", s.SentinelsReady, sentinels)
	}
	return true, sessionv1.ReasonReady, fmt.Sprintf("Primary %s, %d/%d Redis servers and %d/%d Sentinels ready", s.Primary, s.ReadyReplicas, want, s.SentinelsReady, sentinels)
}

func appStatuses(p *pass) []sessionv1.AppStatus {
	if p.deployments == nil {
		return p.sc.Status.Apps
	}
	out := make([]sessionv1.AppStatus, 0, len(p.spec.Apps))
	for i := range p.spec.Apps {
		app := &p.spec.Apps[i]
		a := sessionv1.AppStatus{Name: app.Name}
		if app.WorkloadRef != nil {
			wiredAppStatus(p, &a, app)
			out = append(out, a)
			continue
		}
		a.Workload = "Deployment/" + p.sc.Name + "-" + app.Name
		d := p.deployments[app.Name]
		switch {
		case app.Replicas != nil:
			a.Replicas = *app.Replicas
		case d != nil:
			// Left to a HorizontalPodAutoscaler: what it asks for now.
			a.Replicas = ptr.Deref(d.Spec.Replicas, 1)
		}
		if d != nil && d.Status.ObservedGeneration >= d.Generation {
			a.ReadyReplicas = d.Status.ReadyReplicas
			a.UpdatedReplicas = d.Status.UpdatedReplicas
		} else if d != nil {
			// The Deployment controller has not seen the latest template yet: none of the
			// pods is known to run it.
			a.ReadyReplicas = min(d.Status.ReadyReplicas, d.Status.UpdatedReplicas)
		}
		out = append(out, a)
	}
	return out
}

// rolloutStalled reports a Deployment whose rollout passed its progress deadline: the
// Deployment controller says so in its Progressing condition.
func rolloutStalled(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == "False" && c.Reason == "ProgressDeadlineExceeded" {
			return d.Status.ObservedGeneration >= d.Generation
		}
	}
	return false
}

func readyOf(s *appsv1.StatefulSet) int32 {
	if s == nil {
		return 0
	}
	return s.Status.ReadyReplicas
}
