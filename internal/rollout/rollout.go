// Package rollout decides the next step of an operator-driven store rollout: replicas
// first, one at a time, each Ready and in sync before the next; then one planned
// switchover to an already-updated replica; then the old primary. Scaling goes through it
// too: up at once (a new pod boots as a replica), down only after the primary is out of
// the way. It is pure (state in, step out) so that the controller and the data-path
// harness, which has no controller, take exactly the same decisions.
package rollout

import (
	"fmt"
	"sort"
	"strings"
)

// Pod is what the decision needs to know about one store pod.
type Pod struct {
	Name    string
	Ordinal int
	// Revision is the StatefulSet revision the pod was made from (controller-revision-hash).
	Revision string
	// Ready is the pod's Ready condition (the readiness probe: a replica's link is up).
	Ready bool
	// Terminating is set once the pod has a deletion timestamp.
	Terminating bool
	// Role is what the server itself reports (INFO replication): "master", "slave", or
	// empty when it did not answer.
	Role string
	// InSync: a replica whose link is up and whose offset has caught up with the primary
	// (within the lag the caller accepts). Ignored for the primary.
	InSync bool
}

// State is the store as the controller (or the harness) sees it now.
type State struct {
	// UpdateRevision is the StatefulSet's current template revision.
	UpdateRevision string
	// Desired is spec.store.replicas; Current is the StatefulSet's spec.replicas now.
	Desired, Current int
	Pods             []Pod
	// Primary is the pod the Sentinels name, empty when they name none or disagree.
	Primary string
	// FailoverInProgress: some Sentinel reports a failover (or the primary down); a
	// planned step would race it.
	FailoverInProgress bool
	// SentinelsReady: every Sentinel is ready, so a failover can be agreed on.
	SentinelsReady bool
}

// Kind is what to do next; the values are those of the API's RolloutStep, which
// status.store.rollout.step reports.
type Kind string

const (
	// Wait: nothing to do until the store settles; Reason says on what.
	Wait Kind = "Wait"
	// ScaleTo: set the StatefulSet's replicas to Replicas.
	ScaleTo Kind = "ScaleTo"
	// DeletePod: delete Pod; the StatefulSet (OnDelete) makes it again at the new revision.
	DeletePod Kind = "DeletePod"
	// Switchover: a planned handover from the primary to one of Candidates.
	Switchover Kind = "Switchover"
	// Done: every pod runs the update revision and the replica count is the desired one.
	Done Kind = "Done"
)

// Step is the decision.
type Step struct {
	Kind     Kind
	Pod      string
	Replicas int
	// Candidates are the replicas a switchover may promote (updated, ready, in sync, and
	// staying after a scale-down), by name.
	Candidates []string
	Reason     string
}

func (s Step) String() string {
	switch s.Kind {
	case ScaleTo:
		return fmt.Sprintf("%s %d: %s", s.Kind, s.Replicas, s.Reason)
	case DeletePod:
		return fmt.Sprintf("%s %s: %s", s.Kind, s.Pod, s.Reason)
	case Switchover:
		return fmt.Sprintf("%s from %s to one of [%s]: %s", s.Kind, s.Pod, strings.Join(s.Candidates, " "), s.Reason)
	}
	return fmt.Sprintf("%s: %s", s.Kind, s.Reason)
}

func wait(format string, a ...any) Step { return Step{Kind: Wait, Reason: fmt.Sprintf(format, a...)} }

// Next is the next step. It never deletes or scales away the primary while a replica
// could take over, never acts while a pod is missing, terminating or not ready, and never
// starts a switchover while the Sentinels report a failover or disagree.
func Next(s State) Step {
	pods := append([]Pod(nil), s.Pods...)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Ordinal < pods[j].Ordinal })
	byOrdinal := map[int]*Pod{}
	for i := range pods {
		byOrdinal[pods[i].Ordinal] = &pods[i]
	}
	for _, p := range pods {
		if p.Terminating {
			return wait("pod %s is terminating", p.Name)
		}
	}
	for i := 0; i < s.Current; i++ {
		if byOrdinal[i] == nil {
			return wait("pod %d of %d does not exist yet", i, s.Current)
		}
	}
	if s.Current < s.Desired {
		// A new pod boots as a replica of the primary the Sentinels name; the running
		// ones are not touched.
		return Step{Kind: ScaleTo, Replicas: s.Desired, Reason: fmt.Sprintf("scale up from %d", s.Current)}
	}
	if s.FailoverInProgress {
		return wait("a failover is under way")
	}
	if s.Primary == "" {
		return wait("the Sentinels name no primary (or disagree)")
	}
	var primary *Pod
	for i := range pods {
		if pods[i].Name == s.Primary {
			primary = &pods[i]
		}
	}
	if primary == nil {
		return wait("the primary %s is not a pod of the store", s.Primary)
	}
	if primary.Role != "master" {
		return wait("the primary %s reports role %q", primary.Name, primary.Role)
	}
	for _, p := range pods {
		if !p.Ready {
			return wait("pod %s is not ready", p.Name)
		}
		if p.Name != primary.Name && (p.Role != "slave" || !p.InSync) {
			return wait("replica %s is not in sync (role %q)", p.Name, p.Role)
		}
	}
	if !s.SentinelsReady {
		return wait("not every Sentinel is ready")
	}

	if s.Current > s.Desired {
		if primary.Ordinal < s.Desired {
			return Step{Kind: ScaleTo, Replicas: s.Desired, Reason: fmt.Sprintf("scale down from %d; the primary %s stays", s.Current, primary.Name)}
		}
		// The primary would be removed: first drop the replicas above it, then hand over
		// to a replica that stays.
		if s.Current > primary.Ordinal+1 {
			return Step{Kind: ScaleTo, Replicas: primary.Ordinal + 1, Reason: fmt.Sprintf("scale down to the primary %s first", primary.Name)}
		}
		var cands []string
		for _, p := range pods {
			if p.Ordinal < s.Desired && p.Name != primary.Name {
				cands = append(cands, p.Name)
			}
		}
		if len(cands) == 0 {
			return wait("no replica that stays after the scale-down can take over from %s", primary.Name)
		}
		return Step{Kind: Switchover, Pod: primary.Name, Candidates: cands, Reason: "the primary would be scaled away"}
	}

	// Replicas first, highest ordinal first (as a StatefulSet would), one at a time.
	for i := len(pods) - 1; i >= 0; i-- {
		p := pods[i]
		if p.Name != primary.Name && p.Revision != s.UpdateRevision {
			return Step{Kind: DeletePod, Pod: p.Name, Reason: fmt.Sprintf("replica at revision %s, want %s", p.Revision, s.UpdateRevision)}
		}
	}
	if primary.Revision != s.UpdateRevision {
		var cands []string
		for _, p := range pods {
			if p.Name != primary.Name {
				cands = append(cands, p.Name)
			}
		}
		if len(cands) == 0 {
			// A single server has nobody to hand over to.
			return Step{Kind: DeletePod, Pod: primary.Name, Reason: "the only server is at an old revision"}
		}
		return Step{Kind: Switchover, Pod: primary.Name, Candidates: cands, Reason: "every replica is updated; the primary is next"}
	}
	return Step{Kind: Done, Reason: fmt.Sprintf("%d pods at revision %s", len(pods), s.UpdateRevision)}
}
