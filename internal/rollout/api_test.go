package rollout

import (
	"testing"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// TestKindsAreTheAPISteps: the controller reports a step's Kind as status.store.rollout.step,
// whose enum the CRD enforces.
func TestKindsAreTheAPISteps(t *testing.T) {
	for k, want := range map[Kind]sessionv1.RolloutStep{
		Wait: sessionv1.RolloutWait, ScaleTo: sessionv1.RolloutScaleTo,
		DeletePod: sessionv1.RolloutDeletePod, Switchover: sessionv1.RolloutSwitchover,
	} {
		if string(k) != string(want) {
			t.Errorf("kind %s reported as %s", k, want)
		}
	}
}
