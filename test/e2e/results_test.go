//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"
)

// results is bin/results/e2e.json. Seconds are wall-clock seconds on the test machine.
type results struct {
	Passed            bool     `json:"passed"`
	FailedSteps       []string `json:"failed_steps"`
	Cluster           string   `json:"cluster"`
	KubernetesVersion string   `json:"kubernetes_version,omitempty"`
	Date              string   `json:"date"`

	// Apply of the Store sample to Ready=True.
	ReadySeconds float64 `json:"ready_seconds"`
	// Pods of the Store SessionCluster Running and ready (all of them, after Ready).
	PodsRunning int `json:"pods_running"`
	PodsTotal   int `json:"pods_total"`
	// Pods (store sample and operator) whose security context meets restricted.
	PodsRestricted int `json:"pods_restricted"`

	SessionsCreated int `json:"sessions_created"`
	// Sessions (or acknowledged counters) missing in any read-back: app pod deleted,
	// primary deleted, primary killed, operator restarted.
	SessionsLost int `json:"sessions_lost"`
	// Read-backs done, each of every session.
	Verifications int `json:"verifications"`

	// The ungraceful kill of the primary: from the kill to the first successful session
	// write through the app Service.
	FailoverSeconds float64 `json:"failover_seconds"`
	// The same for the graceful delete of the primary pod (preStop hand-over).
	PlannedFailoverSeconds float64         `json:"planned_failover_seconds"`
	Failovers              []failoverFacts `json:"failovers"`

	// Day-2 operations under session writes (test/e2e/day2_test.go): the fields of make
	// test-day2's bin/results/day2.json, measured on the real cluster.
	Day2 []day2Case `json:"day2"`

	// The rotate-password annotation under session writes.
	Rotation *rotationFacts `json:"rotation,omitempty"`

	// A sharded store (Redis Cluster) serving the reference app: a shard primary killed.
	// ("cluster" names the Kubernetes cluster the run used.)
	RedisCluster *clusterFacts `json:"redis_cluster,omitempty"`

	// A user's Deployment wired by workloadRef: sessions from the store, a failover.
	BringYourOwn *byoFacts `json:"bring_your_own,omitempty"`

	OperatorRestartSeconds float64 `json:"operator_restart_seconds"`
	ChildrenChecked        int     `json:"children_checked"`
	ChildrenRecreated      int     `json:"children_recreated"`

	StickyReadySeconds    float64 `json:"sticky_ready_seconds"`
	ClusteredReadySeconds float64 `json:"clustered_ready_seconds"`
	ClusteredReplicated   int     `json:"clustered_sessions_replicated"`

	// Clustered mode with real Tomcat (examples/tomcat): sessions made on one pod, read
	// on every other; losses when a pod is deleted and when scaling back in; old pods
	// restarted or replaced while replicas went 3 -> 5 under load; the fewest of the
	// sessions any new pod served at their latest acknowledged counter; from a write's
	// answer on one pod to the first read on another that shows it (each request through
	// the apiserver's pod proxy). -1: not measured.
	TomcatReadySeconds        float64 `json:"tomcat_ready_seconds"`
	TomcatSessions            int     `json:"tomcat_sessions"`
	TomcatReplicated          int     `json:"tomcat_sessions_replicated"`
	TomcatLostOnPodDelete     int     `json:"tomcat_sessions_lost_on_pod_delete"`
	TomcatOldPodsRestarted    int     `json:"tomcat_scale_out_old_pods_restarted"`
	TomcatServedByNewPods     int     `json:"tomcat_scale_out_sessions_served_by_new_pods"`
	TomcatScaleOutSeconds     float64 `json:"tomcat_scale_out_seconds"`
	TomcatScaleOutWrites      int     `json:"tomcat_scale_out_writes"`
	TomcatScaleOutWriteErrors int     `json:"tomcat_scale_out_write_errors"`
	TomcatLostOnScaleIn       int     `json:"tomcat_sessions_lost_on_scale_in"`
	TomcatReplicationP50      float64 `json:"tomcat_replication_seconds_p50"`
	TomcatReplicationP99      float64 `json:"tomcat_replication_seconds_p99"`

	DeleteGCSeconds    float64  `json:"delete_gc_seconds"`
	PVCsKept           int      `json:"pvcs_kept"`
	UninstallLeftovers []string `json:"uninstall_leftovers"`
	UninstallSeconds   float64  `json:"uninstall_seconds"`
	// UninstallUnwired: helm uninstall met a SessionCluster wiring the user's own
	// Deployment, and left that Deployment running without its wiring.
	UninstallUnwired *bool              `json:"uninstall_unwired_user_workload,omitempty"`
	ClusterUpSeconds float64            `json:"cluster_up_seconds"`
	ImagesSeconds    float64            `json:"images_seconds"`
	InstallSeconds   float64            `json:"install_seconds"`
	SetupSeconds     float64            `json:"setup_seconds"`
	TotalSeconds     float64            `json:"total_seconds"`
	StepSeconds      map[string]float64 `json:"step_seconds"`

	routingResults // routing_test.go
	netpolResults  // netpol_test.go
	chaosResults   // chaos_test.go
}

// failoverFacts is one primary loss as the clients and the status saw it.
type failoverFacts struct {
	Kind   string `json:"kind"`   // planned (pod deleted) | kill (SIGKILL)
	Method string `json:"method"` // how the primary was taken away
	From   string `json:"from"`
	To     string `json:"to"`
	// Kill to the first successful write through the app Service.
	WriteGapSeconds float64 `json:"write_gap_seconds"`
	// Kill to status.store.primary naming the new primary.
	StatusSeconds float64 `json:"status_seconds"`
	// Kill to Ready=True again with every server ready.
	ReadySeconds float64 `json:"ready_seconds"`
	// status.store.lastFailover as the operator recorded it.
	RecordedDuration string `json:"recorded_duration,omitempty"`
	RecordedTime     string `json:"recorded_time,omitempty"`
	// What the writing clients saw.
	Requests       int     `json:"requests"`
	Failed         int     `json:"failed"`
	MaxGapSeconds  float64 `json:"max_gap_seconds"`
	WentBackwards  int     `json:"went_backwards"`
	UnknownSession int     `json:"unknown_sessions"`
	Lost           int     `json:"lost"`
	// The old primary's pod came back and rejoined as a replica.
	OldPrimaryRole string `json:"old_primary_role"`
}

func newResults() *results {
	return &results{FailedSteps: []string{}, Failovers: []failoverFacts{}, Day2: []day2Case{}, UninstallLeftovers: []string{},
		StepSeconds: map[string]float64{}, Date: time.Now().UTC().Format(time.RFC3339),
		TomcatReplicated: -1, TomcatLostOnPodDelete: -1, TomcatOldPodsRestarted: -1, TomcatServedByNewPods: -1,
		TomcatLostOnScaleIn: -1, TomcatScaleOutWriteErrors: -1,
		chaosResults: chaosResults{ChaosFreezeReadyFalseSeconds: -1, ChaosAllDeletedNoPrimarySeconds: -1, ChaosAllDeletedReadyFalseSeconds: -1}}
}

func (r *results) fail(step, _ string) {
	for _, s := range r.FailedSteps {
		if s == step {
			return
		}
	}
	r.FailedSteps = append(r.FailedSteps, step)
}

func (r *results) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
