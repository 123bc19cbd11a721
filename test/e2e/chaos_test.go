//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// chaosResults are the store-truth figures of e2e.json: how long status took to stop
// saying Ready when the store could not take writes, and what it said.
type chaosResults struct {
	// SIGSTOP of redis-server in the primary's pod to Ready=False, and its reason.
	ChaosFreezeReadyFalseSeconds float64 `json:"chaos_freeze_ready_false_seconds"`
	ChaosFreezeReason            string  `json:"chaos_freeze_reason,omitempty"`
	// Reasons Ready went through from the freeze to Ready=True again (the old primary
	// resumed with SIGCONT once its pod was unready and the Sentinels had moved on).
	ChaosFreezeReasonsSeen []string `json:"chaos_freeze_reasons_seen"`
	// Samples (every ~0.5 s after SIGCONT) in which the resumed old primary said
	// role:master while its pod was Ready; 0 expected.
	ChaosStaleMasterReadySamples int `json:"chaos_stale_master_ready_samples"`
	// SIGSTOP to Ready=True again with every server ready.
	ChaosFreezeRecoveredSeconds float64 `json:"chaos_freeze_recovered_seconds"`
	// Every Redis pod deleted at once: to Ready=False, to StoreReady=False with NoPrimary,
	// and to Ready=True again.
	ChaosAllDeletedReadyFalseSeconds float64  `json:"chaos_all_deleted_ready_false_seconds"`
	ChaosAllDeletedNoPrimarySeconds  float64  `json:"chaos_all_deleted_noprimary_seconds"`
	ChaosAllDeletedReasonsSeen       []string `json:"chaos_all_deleted_reasons_seen"`
	ChaosAllDeletedRecoveredSeconds  float64  `json:"chaos_all_deleted_recovered_seconds"`
	// A failover forced (SENTINEL FAILOVER) while the operator was scaled to 0: recorded
	// in status.store.lastFailover when it came back, with one Failover event and the
	// failovers metric at 1; seconds from the scale-up to the record.
	FailoverWhileDownRecorded        bool    `json:"failover_while_down_recorded"`
	FailoverWhileDownRecordedSeconds float64 `json:"failover_while_down_recorded_seconds"`
	FailoverWhileDownEvents          int     `json:"failover_while_down_events"`
	FailoverWhileDownMetric          float64 `json:"failover_while_down_metric"`
}

func testChaos(t *testing.T) {
	ok := step(t, "store/chaos-freeze-primary", testChaosFreeze)
	if ok {
		ok = step(t, "store/chaos-all-deleted", testChaosAllDeleted)
	}
	if ok {
		step(t, "store/chaos-failover-while-operator-down", testFailoverWhileOperatorDown)
	}
}

// reasonOf is the status and reason of cond, "" when absent.
func reasonOf(sc *sessionv1.SessionCluster, cond string) (metav1.ConditionStatus, string) {
	c := meta.FindStatusCondition(sc.Status.Conditions, cond)
	if c == nil {
		return "", ""
	}
	return c.Status, c.Reason
}

// signalRedis sends sig to redis-server inside the pod's redis container.
func (e *env) signalRedis(pod, sig string) error {
	script := `for p in /proc/[0-9]*; do if [ "$(cat $p/comm 2>/dev/null)" = redis-server ]; then kill -` + sig + ` ${p#/proc/} && echo signalled ${p#/proc/}; fi; done`
	out, err := e.kc("-n", nsStore, "exec", pod, "-c", "redis", "--", "sh", "-c", script)
	if err != nil || !strings.Contains(out, "signalled") {
		return fmt.Errorf("kill -%s redis-server in %s: %v: %q", sig, pod, err, out)
	}
	return nil
}

// redisRole is what the server in pod says in INFO replication (the operator user's
// password reaches redis-cli from the container's environment, never an argument).
func (e *env) redisRole(ctx context.Context, pod string) string {
	out, err := e.kcCtx(ctx, "-n", nsStore, "exec", pod, "-c", "redis", "--", "sh", "-c",
		`timeout 2 redis-cli --no-auth-warning --raw --user "$REDISCLI_USER" -p 6379 INFO replication | tr -d '\r' | sed -n 's/^role://p'`)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// sentinelPrimary asks a Sentinel pod which host it names the primary.
func (e *env) sentinelPrimary(ctx context.Context, sentinelPod string) string {
	out, err := e.kcCtx(ctx, "-n", nsStore, "exec", sentinelPod, "-c", "sentinel", "--", "sh", "-c",
		`timeout 2 redis-cli --no-auth-warning --raw --user "$REDISCLI_USER" -p 26379 SENTINEL get-master-addr-by-name "$MASTER_NAME" | head -n 1`)
	if err != nil {
		return ""
	}
	return render.PodFromHost(strings.TrimSpace(out))
}

func addReason(seen []string, sc *sessionv1.SessionCluster) []string {
	if st, r := reasonOf(sc, sessionv1.ConditionReady); st != "" {
		s := string(st) + "/" + r
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
	}
	return seen
}

func storeWhole(sc *sessionv1.SessionCluster) bool {
	return isReady(sc) && sc.Status.Store != nil && sc.Status.Store.ReadyReplicas == 3 && sc.Status.Store.SentinelsReady == 3
}

// testChaosFreeze freezes the primary's redis-server (SIGSTOP): its pod stays Running and,
// for a while, Ready, and it still says role:master when it resumes. Status must say
// Ready=False promptly, and the resumed old primary must not be a Ready master.
func testChaosFreeze(t *testing.T) {
	ctx := context.Background()
	sc := e.waitSC(t, nsStore, storeSC, 5*time.Minute, "Ready=True with every server ready", storeWhole)
	from := sc.Status.Store.Primary
	seen := addReason(nil, sc)
	frozenAt := time.Now()
	if err := e.signalRedis(from, "STOP"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = e.signalRedis(from, "CONT")
		}
	}()
	logf("chaos: redis-server in primary %s frozen (SIGSTOP)", from)
	sc = e.waitSC(t, nsStore, storeSC, 2*time.Minute, "Ready=False", func(sc *sessionv1.SessionCluster) bool {
		seen = addReason(seen, sc)
		return !isReady(sc)
	})
	e.res.ChaosFreezeReadyFalseSeconds = secs(time.Since(frozenAt))
	_, e.res.ChaosFreezeReason = reasonOf(sc, sessionv1.ConditionReady)
	logf("chaos: Ready=False %.2f s after the freeze (%s)", e.res.ChaosFreezeReadyFalseSeconds, readyMessage(sc))

	// The Sentinels move on and the kubelet sees the frozen pod unready; then it resumes.
	var old corev1.Pod
	err := poll(2*time.Minute, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		seen = addReason(seen, sc)
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: from}, &old); err != nil {
			return false, err
		}
		return sc.Status.Store.Primary != from && !podReady(&old), nil
	})
	if err != nil {
		t.Fatalf("no failover away from the frozen %s with its pod unready: %v", from, err)
	}
	if err := e.signalRedis(from, "CONT"); err != nil {
		t.Fatal(err)
	}
	resumed = true
	logf("chaos: %s resumed (SIGCONT)", from)
	converted := false
	err = poll(3*time.Minute, 500*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		seen = addReason(seen, sc)
		if !converted {
			role := e.redisRole(ctx, from)
			var p corev1.Pod
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: from}, &p); err == nil && role == "master" && podReady(&p) {
				e.res.ChaosStaleMasterReadySamples++
			}
			converted = role == "slave"
		}
		return converted && storeWhole(sc), nil
	})
	e.res.ChaosFreezeReasonsSeen = seen
	if err != nil {
		t.Fatalf("after resuming %s: %v (reasons %v)", from, err, seen)
	}
	e.res.ChaosFreezeRecoveredSeconds = secs(time.Since(frozenAt))
	logf("chaos: Ready again %.1f s after the freeze; reasons %v; stale master Ready in %d samples",
		e.res.ChaosFreezeRecoveredSeconds, seen, e.res.ChaosStaleMasterReadySamples)
	if e.res.ChaosStaleMasterReadySamples > 0 {
		t.Errorf("the resumed old primary %s was Ready while it said role:master in %d samples", from, e.res.ChaosStaleMasterReadySamples)
	}
}

// testChaosAllDeleted loses every Redis pod at once, as a crashed node does: status must
// leave Ready and say NoPrimary, then come back when the StatefulSet's new pods elect the
// old primary again.
//
// The pods get one second to stop. With the default grace period the primary's preStop
// may outlive the replicas, see one come back, and hand over to it (CI saw it: the
// replicas were back within 4 s), so there is always a primary and NoPrimary would be a
// lie; store/day2-restart-all covers that graceful path, with its writes.
func testChaosAllDeleted(t *testing.T) {
	ctx := context.Background()
	e.waitSC(t, nsStore, storeSC, 5*time.Minute, "Ready=True with every server ready", storeWhole)
	var seen []string
	deletedAt := time.Now()
	if err := e.c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(nsStore), client.GracePeriodSeconds(1),
		client.MatchingLabels(map[string]string{render.LabelInstance: storeSC, render.LabelComponent: render.ComponentStore})); err != nil {
		t.Fatal(err)
	}
	logf("chaos: every Redis pod of %s deleted", storeSC)
	err := poll(3*time.Minute, 100*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		seen = addReason(seen, sc)
		if !isReady(sc) && e.res.ChaosAllDeletedReadyFalseSeconds < 0 {
			e.res.ChaosAllDeletedReadyFalseSeconds = secs(time.Since(deletedAt))
		}
		if st, r := reasonOf(sc, sessionv1.ConditionStoreReady); st == metav1.ConditionFalse && r == sessionv1.ReasonNoPrimary {
			e.res.ChaosAllDeletedNoPrimarySeconds = secs(time.Since(deletedAt))
			logf("chaos: NoPrimary %.2f s after the delete: %s", e.res.ChaosAllDeletedNoPrimarySeconds,
				meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionStoreReady).Message)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		e.res.ChaosAllDeletedReasonsSeen = seen
		t.Fatalf("StoreReady never said NoPrimary after every Redis pod was deleted: %v (Ready reasons %v)", err, seen)
	}
	err = poll(5*time.Minute, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		seen = addReason(seen, sc)
		return storeWhole(sc), nil
	})
	e.res.ChaosAllDeletedReasonsSeen = seen
	if err != nil {
		t.Fatalf("not Ready again after every Redis pod was deleted: %v (reasons %v)", err, seen)
	}
	e.res.ChaosAllDeletedRecoveredSeconds = secs(time.Since(deletedAt))
	logf("chaos: all deleted: Ready=False after %.2f s, NoPrimary after %.2f s, Ready again after %.1f s; reasons %v",
		e.res.ChaosAllDeletedReadyFalseSeconds, e.res.ChaosAllDeletedNoPrimarySeconds, e.res.ChaosAllDeletedRecoveredSeconds, seen)
}

// operatorDeployment is the chart's manager Deployment.
func (e *env) operatorDeployment(ctx context.Context) (*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := e.c.List(ctx, &list, client.InNamespace(operatorNS), client.MatchingLabels{"app.kubernetes.io/name": "session-operator"}); err != nil {
		return nil, err
	}
	if len(list.Items) != 1 {
		return nil, fmt.Errorf("%d operator Deployments in %s", len(list.Items), operatorNS)
	}
	return &list.Items[0], nil
}

func (e *env) scaleOperator(ctx context.Context, n int32) error {
	d, err := e.operatorDeployment(ctx)
	if err != nil {
		return err
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = &n
	return e.c.Patch(ctx, d, patch)
}

// failoverMetric reads session_operator_failovers_total for the store sample from the
// operator pod's metrics, through the apiserver's pod proxy.
func (e *env) failoverMetric(ctx context.Context, pod string) (float64, error) {
	out, err := e.kcCtx(ctx, "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:8080/proxy/metrics", operatorNS, pod))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "session_operator_failovers_total{") && strings.Contains(line, `namespace="`+nsStore+`"`) &&
			strings.Contains(line, `name="`+storeSC+`"`) {
			var v float64
			_, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
			return v, err
		}
	}
	return 0, nil
}

// testFailoverWhileOperatorDown: the operator is scaled to 0, a Sentinel is asked for a
// failover, and the operator comes back to a store whose primary changed without it. It
// must record the failover (lastFailover, one event, the metric) from what it finds.
func testFailoverWhileOperatorDown(t *testing.T) {
	ctx := context.Background()
	sc := e.waitSC(t, nsStore, storeSC, 5*time.Minute, "Ready=True with every server ready", storeWhole)
	from := sc.Status.Store.Primary
	if err := e.scaleOperator(ctx, 0); err != nil {
		t.Fatal(err)
	}
	scaledUp := false
	defer func() {
		if !scaledUp {
			_ = e.scaleOperator(ctx, 1)
		}
	}()
	if err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		ops, err := e.operatorPods(ctx)
		return len(ops) == 0, err
	}); err != nil {
		t.Fatalf("operator pods still there after scaling to 0: %v", err)
	}
	logf("chaos: operator scaled to 0; asking a Sentinel to fail over from %s", from)
	sentinel0 := storeSC + "-sentinel-0"
	// Right after the previous step every server is ready, but a Sentinel may not have
	// refreshed what it knows of the replicas yet (INFO every 10 s) and answers NOGOODSLAVE
	// until it has: ask again until it takes the failover.
	var out string
	if err := poll(time.Minute, 2*time.Second, func() (bool, error) {
		var err error
		out, err = e.kc("-n", nsStore, "exec", sentinel0, "-c", "sentinel", "--", "sh", "-c",
			`redis-cli --no-auth-warning --raw --user "$REDISCLI_USER" -p 26379 SENTINEL FAILOVER "$MASTER_NAME"`)
		out = strings.TrimSpace(out)
		if err == nil && (strings.HasPrefix(out, "NOGOODSLAVE") || strings.HasPrefix(out, "INPROG")) {
			return false, nil
		}
		return true, err
	}); err != nil || !strings.HasPrefix(out, "OK") {
		t.Fatalf("SENTINEL FAILOVER: %v %q", err, out)
	}
	var to string
	if err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		names := map[string]bool{}
		for i := range 3 {
			names[e.sentinelPrimary(ctx, fmt.Sprintf("%s-sentinel-%d", storeSC, i))] = true
		}
		if len(names) != 1 || names[from] || names[""] {
			return false, nil
		}
		for n := range names {
			to = n
		}
		return true, nil
	}); err != nil {
		t.Fatalf("the Sentinels did not all name a new primary: %v", err)
	}
	if sc, err := e.getSC(ctx, nsStore, storeSC); err != nil || sc.Status.Store.Primary != from {
		t.Fatalf("status changed with the operator down: %v %+v", err, sc.Status.Store)
	}
	logf("chaos: every Sentinel names %s; operator back to 1", to)
	upAt := time.Now()
	if err := e.scaleOperator(ctx, 1); err != nil {
		t.Fatal(err)
	}
	scaledUp = true
	err := poll(3*time.Minute, 200*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		lf := sc.Status.Store.LastFailover
		return sc.Status.Store.Primary == to && lf != nil && lf.From == from && lf.To == to && !lf.Time.Time.Before(upAt.Add(-time.Second)), nil
	})
	if err != nil {
		t.Fatalf("the operator did not record the failover %s → %s it missed: %v", from, to, err)
	}
	e.res.FailoverWhileDownRecordedSeconds = secs(time.Since(upAt))
	// A few passes later: still one event, the metric at one.
	time.Sleep(15 * time.Second)
	var evs eventsv1.EventList
	if err := e.c.List(ctx, &evs, client.InNamespace(nsStore)); err != nil {
		t.Fatal(err)
	}
	note := fmt.Sprintf("Primary moved from %s to %s", from, to)
	for _, ev := range evs.Items {
		if ev.Reason == sessionv1.EventFailover && ev.Regarding.Name == storeSC && ev.Note == note && !ev.CreationTimestamp.Time.Before(upAt.Add(-time.Second)) {
			n := 1
			if ev.Series != nil {
				n = max(n, int(ev.Series.Count))
			}
			e.res.FailoverWhileDownEvents += n
		}
	}
	ops, err := e.operatorPods(ctx)
	if err != nil || len(ops) != 1 {
		t.Fatalf("operator pods: %d %v", len(ops), err)
	}
	if e.res.FailoverWhileDownMetric, err = e.failoverMetric(ctx, ops[0].Name); err != nil {
		t.Errorf("reading the failovers metric: %v", err)
	}
	e.res.FailoverWhileDownRecorded = e.res.FailoverWhileDownEvents == 1 && e.res.FailoverWhileDownMetric == 1
	logf("chaos: failover %s → %s recorded %.1f s after the operator came back; %d event(s), metric %g",
		from, to, e.res.FailoverWhileDownRecordedSeconds, e.res.FailoverWhileDownEvents, e.res.FailoverWhileDownMetric)
	if !e.res.FailoverWhileDownRecorded {
		t.Errorf("want one Failover event and the metric at 1: %d events, metric %g", e.res.FailoverWhileDownEvents, e.res.FailoverWhileDownMetric)
	}
	e.waitSC(t, nsStore, storeSC, 3*time.Minute, "Ready=True with every server ready", storeWhole)
}
