//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// The sharded store runs alone: E2E_RUN=TestE2E/cluster make test-e2e.
const (
	nsCluster = "e2e-cluster"
	clusterSC = "cart"
	// killedShard is the shard whose primary is killed.
	killedShard = 1
)

// clusterFacts is the sharded store's scenario in bin/results/e2e.json ("redis_cluster").
type clusterFacts struct {
	// Apply of examples/sharded-store to Ready=True with every slot covered.
	ReadySeconds              float64 `json:"ready_seconds"`
	Shards                    int     `json:"shards"`
	ServersPerShard           int     `json:"servers_per_shard"`
	SlotsCovered              int32   `json:"slots_covered"`
	ClusterNodeTimeoutSeconds float64 `json:"cluster_node_timeout_seconds"`
	SessionsCreated           int     `json:"sessions_created"`
	// Sessions missing in the read-backs (before and after the kill).
	SessionsLost int `json:"sessions_lost"`
	// The shard primary's Redis server SIGKILLed under session writes; from/to are pods,
	// status_seconds is the kill to the shard's new primary in status.store.shards.
	Shard    int           `json:"shard"`
	Failover failoverFacts `json:"failover"`
}

// testShardedStore: the reference app in cluster mode on a 3-shard store serves sessions;
// a shard primary's Redis is SIGKILLed under writes; the shard fails over to its replica,
// status records it, no session and no acknowledged write is lost, and the killed server
// comes back as a replica.
func testShardedStore(t *testing.T) {
	ctx := context.Background()
	f := &clusterFacts{Shard: killedShard, Failover: failoverFacts{Kind: "shard-kill"}}
	e.res.RedisCluster = f
	e.createNamespace(t, nsCluster)
	t.Cleanup(func() {
		e.saveClusterLogs(f.Failover.From, f.Failover.To)
		// Six servers and the apps would weigh on the steps after this one.
		_ = e.c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsCluster}})
	})

	sc := loadManifest(t, "examples/sharded-store/sessioncluster.yaml", nsCluster)
	mem := resource.MustParse("64Mi")
	sc.Spec.Store.MaxMemory = &mem
	sc.Spec.Store.Persistence.Size = resource.MustParse("256Mi")
	f.Shards, f.ServersPerShard = int(*sc.Spec.Store.Shards), int(sc.Spec.Store.Replicas)
	f.ClusterNodeTimeoutSeconds = sc.Spec.Store.ClusterNodeTimeout.Seconds()
	servers := int32(f.Shards * f.ServersPerShard)
	start := time.Now()
	if err := e.c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	got := e.waitSC(t, nsCluster, clusterSC, 8*time.Minute, "Ready with every slot covered", func(sc *sessionv1.SessionCluster) bool {
		st := sc.Status.Store
		return isReady(sc) && st != nil && st.SlotsCovered != nil && *st.SlotsCovered == render.ClusterSlots &&
			len(st.Shards) == f.Shards && st.ReadyReplicas == servers && shardsPlaced(st.Shards, f.ServersPerShard-1)
	})
	f.ReadySeconds = secs(time.Since(start))
	f.SlotsCovered = *got.Status.Store.SlotsCovered
	logf("sharded store Ready after %.1f s: %d shards, %d slots, primaries %v", f.ReadySeconds, len(got.Status.Store.Shards), f.SlotsCovered, primaries(got))

	// The apps are wired for a cluster client.
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsCluster, Name: clusterSC + "-web"}, dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if v := envNamed(c, "SESSION_REDIS_MODE"); v == nil || v.Value != "cluster" {
		t.Fatalf("app not wired for a cluster: SESSION_REDIS_MODE %+v", v)
	}
	if v := envNamed(c, "SESSION_REDIS_CLUSTER_NODES"); v == nil || !strings.Contains(v.Value, clusterSC+"-store-0."+clusterSC+"-store-headless."+nsCluster) {
		t.Fatalf("SESSION_REDIS_CLUSTER_NODES %+v", v)
	}

	e.startClient(t, nsCluster)
	url := fmt.Sprintf("http://%s-web:8080", clusterSC)
	out, err := e.sessionload(ctx, nsCluster, "create", "-urls", url, "-n", fmt.Sprint(sessions), "-concurrency", "8", "-out", "/work/s.json")
	var made struct {
		Created     int `json:"created"`
		FailedBumps int `json:"failed_bumps"`
	}
	if jerr := json.Unmarshal([]byte(lastLine(out)), &made); jerr != nil || err != nil {
		t.Fatalf("creating sessions through %s: %v %v: %s", url, err, jerr, out)
	}
	f.SessionsCreated = made.Created
	if made.Created != sessions || made.FailedBumps > 0 {
		t.Fatalf("created %d of %d sessions (%d bumps failed)", made.Created, sessions, made.FailedBumps)
	}
	f.SessionsLost += e.verify(t, nsCluster, url, "on the sharded store").Lost

	f.Failover = e.killShardPrimary(t, got, url, servers)
	f.SessionsLost += f.Failover.Lost
}

// shardsPlaced: every shard has a primary and its replicas.
func shardsPlaced(shards []sessionv1.ShardStatus, replicas int) bool {
	for _, s := range shards {
		if s.Primary == "" || int(s.Replicas) != replicas || s.Slots == 0 {
			return false
		}
	}
	return true
}

func primaries(sc *sessionv1.SessionCluster) []string {
	var out []string
	for _, s := range sc.Status.Store.Shards {
		out = append(out, s.Primary)
	}
	return out
}

// killShardPrimary SIGKILLs one shard primary's Redis while four clients write sessions,
// and measures what the failover cost them.
func (e *env) killShardPrimary(t *testing.T, sc *sessionv1.SessionCluster, url string, servers int32) failoverFacts {
	t.Helper()
	ctx := context.Background()
	from := sc.Status.Store.Shards[killedShard].Primary
	f := failoverFacts{Kind: "shard-kill", From: from}
	old := &corev1.Pod{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsCluster, Name: from}, old); err != nil {
		t.Fatal(err)
	}

	done := make(chan runOut, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, writeRun+time.Minute)
		defer cancel()
		out, err := e.sessionload(rctx, nsCluster, "run", "-urls", url, "-in", "/work/s.json", "-duration", writeRun.String(),
			"-clients", "4", "-interval", "10ms", "-timeout", "3s", "-events", "/dev/stdout")
		done <- runOut{out, err}
	}()
	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	var err error
	if f.Method, err = e.killRedisIn(nsCluster, from); err != nil {
		t.Fatalf("killing shard %d primary %s: %v", killedShard, from, err)
	}
	logf("shard %d primary %s killed (%s)", killedShard, from, f.Method)

	// Status names the shard's new primary and records the failover; Ready returns with
	// every server ready and the killed one back as a replica (a primary of no shard).
	var statusAt, readyAt time.Time
	var last *sessionv1.SessionCluster
	err = poll(4*time.Minute, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsCluster, clusterSC)
		if err != nil {
			return false, err
		}
		last = sc
		st := sc.Status.Store
		if st == nil || len(st.Shards) <= killedShard {
			return false, nil
		}
		sh := st.Shards[killedShard]
		if sh.Primary == "" || sh.Primary == from || sh.LastFailover == nil || sh.LastFailover.From != from || sh.LastFailover.To != sh.Primary {
			return false, nil
		}
		if statusAt.IsZero() {
			statusAt = time.Now()
			f.To = sh.Primary
			f.RecordedTime = sh.LastFailover.Time.UTC().Format(time.RFC3339)
		}
		for _, s := range st.Shards {
			if s.Primary == from {
				return false, nil
			}
		}
		if isReady(sc) && st.ReadyReplicas == servers && shardsPlaced(st.Shards, int(sc.Spec.Store.Replicas)-1) {
			readyAt = time.Now()
			return true, nil
		}
		return false, nil
	})
	if !statusAt.IsZero() {
		f.StatusSeconds = secs(statusAt.Sub(killedAt))
	}
	if err != nil {
		msg := ""
		if last != nil {
			msg = fmt.Sprintf("%s, shards %+v", readyMessage(last), last.Status.Store.Shards)
		}
		t.Errorf("after killing %s: %v; last status %s", from, err, msg)
	} else {
		f.ReadySeconds = secs(readyAt.Sub(killedAt))
		f.OldPrimaryRole = render.RoleReplica
		logf("shard %d: status names %s after %.1f s, Ready again with %s a replica after %.1f s", killedShard, f.To, f.StatusSeconds, from, f.ReadySeconds)
	}

	r := <-done
	sum := finishedRun(t, r)
	oks := succeededAt(r)
	f.Requests, f.Failed, f.MaxGapSeconds = sum.Requests, sum.Failed, sum.MaxGapSeconds
	f.WentBackwards, f.UnknownSession = sum.WentBackwards, sum.UnknownSessions
	if resumed, ok := writesResumed(oks, killedAt); ok {
		f.WriteGapSeconds = secs(resumed.Sub(killedAt))
	} else {
		t.Errorf("no successful write after the kill in %s (%d requests, %d failed: %s)", writeRun, sum.Requests, sum.Failed, sum.FirstError)
	}
	logf("shard kill: writes resumed %.2f s after the kill; %d requests, %d failed, longest gap %.2f s, went backwards %d, unknown %d",
		f.WriteGapSeconds, sum.Requests, sum.Failed, sum.MaxGapSeconds, sum.WentBackwards, sum.UnknownSessions)
	if sum.WentBackwards > 0 || sum.UnknownSessions > 0 {
		t.Errorf("writers saw acknowledged data lost: went_backwards %d, unknown_sessions %d", sum.WentBackwards, sum.UnknownSessions)
	}
	// Only the killed shard's sessions may pause; the gap is bounded by the node timeout
	// (failure detection), the election, and the clients' slot map refresh.
	if limit := sc.Spec.Store.ClusterNodeTimeout.Seconds() + 10; f.WriteGapSeconds > limit {
		t.Errorf("writes resumed %.1f s after the kill, beyond cluster-node-timeout + 10 s (%.0f s)", f.WriteGapSeconds, limit)
	}
	e.res.SessionsLost += sum.UnknownSessions
	f.Lost = e.verify(t, nsCluster, url, "after the shard primary was killed").Lost
	return f
}

// saveClusterLogs keeps the servers' and the operator's logs of the sharded scenario in
// bin/results/e2e-logs/cluster/, whether it passed or not.
func (e *env) saveClusterLogs(from, to string) {
	dir := filepath.Join(e.root, "bin/results/e2e-logs/cluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	var pods corev1.PodList
	if err := e.c.List(context.Background(), &pods, client.InNamespace(nsCluster)); err != nil && !apierrors.IsNotFound(err) {
		return
	}
	for _, p := range pods.Items {
		if p.Labels[render.LabelComponent] != render.ComponentStore {
			continue
		}
		for _, prev := range []bool{false, true} {
			args := []string{"-n", nsCluster, "logs", "--timestamps", p.Name}
			name := p.Name + ".txt"
			if prev {
				args, name = append(args, "--previous"), p.Name+"-previous.txt"
			}
			out, err := e.kc(args...)
			if err != nil {
				if prev {
					continue
				}
				out += "\n" + err.Error() + "\n"
			}
			_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "failover.txt"), []byte(fmt.Sprintf("from %s to %s\n", from, to)), 0o644)
	ops, _ := e.operatorPods(context.Background())
	for _, p := range ops {
		out, _ := e.kc("-n", operatorNS, "logs", p.Name)
		_ = os.WriteFile(filepath.Join(dir, "operator-"+p.Name+".txt"), []byte(out), 0o644)
	}
}
