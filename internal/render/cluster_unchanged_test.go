package render

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// sentinelStoreGolden is the hash of every object rendered for the Sentinel stores below,
// taken when the sharded store was added (then updated once, for the readiness probe that
// asks the Sentinels whether a master is still theirs): a store without shards renders
// byte for byte as before, so adding shards to the operator rolls no server and no app pod.
// A change here is a rollout of every store on upgrade; update the hash only on purpose.
const sentinelStoreGolden = "8f13cd2158099fe3"

func TestSentinelStoreRendersAsBeforeShards(t *testing.T) {
	var all []any
	for _, sc := range []*sessionv1.SessionCluster{
		cluster(sessionv1.ModeStore),
		cluster(sessionv1.ModeSticky, func(s *sessionv1.SessionClusterSpec) {
			s.Store = &sessionv1.StoreSpec{Replicas: 5, Persistence: &sessionv1.PersistenceSpec{Size: resource.MustParse("1Gi")}}
			s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "api", Image: "example/api:1", KeyPrefix: "api:", Replicas: ptr.To[int32](2)})
		}),
	} {
		d := mustRender(t, sc)
		all = append(all, d.Objects, d.Users)
	}
	b, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	if got := Hash(string(b)); got != sentinelStoreGolden {
		t.Errorf("a store without shards renders differently than before the sharded store: hash %s, want %s", got, sentinelStoreGolden)
	}
}
