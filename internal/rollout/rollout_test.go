package rollout

import (
	"fmt"
	"reflect"
	"testing"
)

// store builds a settled store of n pods at revision rev, primary at ordinal prim.
func store(n, prim int, rev string) State {
	s := State{UpdateRevision: rev, Desired: n, Current: n, Primary: fmt.Sprintf("s-%d", prim), SentinelsReady: true}
	for i := 0; i < n; i++ {
		role := "slave"
		if i == prim {
			role = "master"
		}
		s.Pods = append(s.Pods, Pod{Name: fmt.Sprintf("s-%d", i), Ordinal: i, Revision: rev, Ready: true, Role: role, InSync: true})
	}
	return s
}

func TestNextWaits(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*State)
		want string
	}{
		"terminating":       {func(s *State) { s.Pods[1].Terminating = true }, "pod s-1 is terminating"},
		"missing":           {func(s *State) { s.Pods = s.Pods[:2] }, "pod 2 of 3 does not exist yet"},
		"failover":          {func(s *State) { s.FailoverInProgress = true }, "a failover is under way"},
		"no primary":        {func(s *State) { s.Primary = "" }, "the Sentinels name no primary (or disagree)"},
		"primary elsewhere": {func(s *State) { s.Primary = "x-0" }, "the primary x-0 is not a pod of the store"},
		"primary not master": {func(s *State) { s.Pods[0].Role = "slave" },
			`the primary s-0 reports role "slave"`},
		"not ready":           {func(s *State) { s.Pods[2].Ready = false }, "pod s-2 is not ready"},
		"replica behind":      {func(s *State) { s.Pods[1].InSync = false }, `replica s-1 is not in sync (role "slave")`},
		"second master":       {func(s *State) { s.Pods[1].Role = "master" }, `replica s-1 is not in sync (role "master")`},
		"sentinels not ready": {func(s *State) { s.SentinelsReady = false }, "not every Sentinel is ready"},
	} {
		t.Run(name, func(t *testing.T) {
			s := store(3, 0, "new")
			s.Pods[2].Revision = "old"
			tc.edit(&s)
			got := Next(s)
			if got.Kind != Wait || got.Reason != tc.want {
				t.Errorf("got %v, want Wait: %s", got, tc.want)
			}
		})
	}
}

// TestRolloutOneSwitchover plays a whole rollout against a model of the StatefulSet
// (OnDelete) and Sentinel: every replica is replaced before the primary, the primary
// changes exactly once, and it changes to an updated replica.
func TestRolloutOneSwitchover(t *testing.T) {
	for prim := 0; prim < 5; prim++ {
		s := store(5, prim, "old")
		s.UpdateRevision = "new"
		var steps []string
		changes := 0
		for i := 0; ; i++ {
			if i > 20 {
				t.Fatalf("primary %d: no end: %v", prim, steps)
			}
			st := Next(s)
			steps = append(steps, st.String())
			switch st.Kind {
			case Done:
			case DeletePod:
				for j := range s.Pods {
					if s.Pods[j].Name == st.Pod {
						if st.Pod == s.Primary {
							t.Fatalf("primary %d: deleted the primary: %v", prim, steps)
						}
						s.Pods[j].Revision = s.UpdateRevision
					}
				}
				continue
			case Switchover:
				if st.Pod != s.Primary {
					t.Fatalf("switchover from %s, primary is %s", st.Pod, s.Primary)
				}
				to := st.Candidates[0]
				for j := range s.Pods {
					if s.Pods[j].Name == to && s.Pods[j].Revision != "new" {
						t.Fatalf("switchover to a replica at an old revision: %v", steps)
					}
					switch s.Pods[j].Name {
					case to:
						s.Pods[j].Role = "master"
					case s.Primary:
						s.Pods[j].Role = "slave"
					}
				}
				s.Primary = to
				changes++
				continue
			default:
				t.Fatalf("primary %d: unexpected %v", prim, st)
			}
			break
		}
		if changes != 1 {
			t.Errorf("primary %d: %d primary changes: %v", prim, changes, steps)
		}
		for _, p := range s.Pods {
			if p.Revision != "new" {
				t.Errorf("primary %d: %s left at %s", prim, p.Name, p.Revision)
			}
		}
	}
}

func TestScale(t *testing.T) {
	up := store(3, 1, "r")
	up.Desired = 5
	if got := Next(up); got.Kind != ScaleTo || got.Replicas != 5 {
		t.Errorf("scale up: %v", got)
	}
	// Scale-up happens even while a replica is behind: new pods only add replicas.
	up.Pods[2].InSync = false
	if got := Next(up); got.Kind != ScaleTo || got.Replicas != 5 {
		t.Errorf("scale up with a replica behind: %v", got)
	}

	down := store(5, 1, "r")
	down.Desired = 3
	if got := Next(down); got.Kind != ScaleTo || got.Replicas != 3 {
		t.Errorf("scale down, primary stays: %v", got)
	}
	down.Pods[4].InSync = false
	if got := Next(down); got.Kind != Wait {
		t.Errorf("scale down with a replica behind: %v", got)
	}

	// The primary would go: replicas above it first, then a switchover to one that stays.
	high := store(5, 3, "r")
	high.Desired = 2
	if got := Next(high); got.Kind != ScaleTo || got.Replicas != 4 {
		t.Errorf("primary s-3, scale to 2: %v", got)
	}
	high.Current = 4
	high.Pods = high.Pods[:4]
	got := Next(high)
	if got.Kind != Switchover || got.Pod != "s-3" || !reflect.DeepEqual(got.Candidates, []string{"s-0", "s-1"}) {
		t.Errorf("primary s-3 at the top: %v", got)
	}
	high.FailoverInProgress = true
	if got := Next(high); got.Kind != Wait {
		t.Errorf("switchover during a failover: %v", got)
	}
	one := store(2, 1, "r")
	one.Desired = 1
	if got := Next(one); got.Kind != Switchover || !reflect.DeepEqual(got.Candidates, []string{"s-0"}) {
		t.Errorf("2 -> 1 with the primary on s-1: %v", got)
	}
}

func TestSingleServer(t *testing.T) {
	s := store(1, 0, "old")
	s.UpdateRevision = "new"
	if got := Next(s); got.Kind != DeletePod || got.Pod != "s-0" {
		t.Errorf("single server: %v", got)
	}
	s.Pods[0].Revision = "new"
	if got := Next(s); got.Kind != Done {
		t.Errorf("single server updated: %v", got)
	}
}
