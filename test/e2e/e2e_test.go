//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

const (
	storeSC     = "shop"
	stickySC    = "catalog"
	clusteredSC = "chat"
	sessions    = 500
	// How long each failover's writers run; the primary goes away 3 s in.
	writeRun = 45 * time.Second
)

// TestE2E is one ordered story on one cluster; a step that later steps need stops them
// when it fails, the independent ones still run.
func TestE2E(t *testing.T) {
	storeOK := step(t, "store/ready", testStoreReady)
	if storeOK {
		step(t, "store/pods-restricted", testStorePods)
		step(t, "store/wiring", testStoreWiring)
		storeOK = step(t, "store/sessions-survive-app-pod-loss", testAppPodLoss)
	}
	if storeOK {
		step(t, "store/password-rotated", testPasswordRotation)
	}
	if storeOK {
		storeOK = step(t, "store/primary-deleted", func(t *testing.T) {
			f := e.failover(t, "planned", func(pod string) (string, error) {
				return "kubectl delete pod (graceful: preStop hands over)", e.c.Delete(context.Background(),
					&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsStore, Name: pod}})
			})
			e.res.PlannedFailoverSeconds = f.WriteGapSeconds
		})
	}
	if storeOK {
		storeOK = step(t, "operator/restart", testOperatorRestart)
	}
	if storeOK {
		step(t, "store/primary-killed", func(t *testing.T) {
			f := e.failover(t, "kill", e.killRedis)
			e.res.FailoverSeconds = f.WriteGapSeconds
		})
	}
	if storeOK {
		step(t, "store/no-zombies", testNoZombies)
	}
	if storeOK {
		testChaos(t)
	}
	if storeOK {
		testDay2(t)
	}
	step(t, "sticky/ready", testSticky)
	step(t, "clustered/ready", testClustered)
	testTomcat(t)
	step(t, "routing/traefik", testRouting)
	step(t, "netpol/enforced", testNetworkPolicy)
	step(t, "byo/wired-store-failover", testBringYourOwnApp)
	step(t, "cluster/shard-primary-killed", testShardedStore)
	if storeOK {
		step(t, "store/delete-gc", testDeleteGC)
	}
	step(t, "helm/uninstall", testUninstall)
	step(t, "cleanup", func(t *testing.T) {
		if err := e.cleanNamespaces(5 * time.Minute); err != nil {
			t.Fatal(err)
		}
		// The claims went with their namespace; their volumes follow (reclaim Delete).
		err := poll(2*time.Minute, time.Second, func() (bool, error) {
			var pvs corev1.PersistentVolumeList
			if err := e.c.List(context.Background(), &pvs); err != nil {
				return false, err
			}
			for _, pv := range pvs.Items {
				if ref := pv.Spec.ClaimRef; ref != nil && strings.HasPrefix(ref.Namespace, "e2e-") {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("volumes of the deleted claims remain: %v", err)
		}
	})
}

// ---------------------------------------------------------------- store ---------

func testStoreReady(t *testing.T) {
	e.createNamespace(t, nsStore)
	e.provePSSEnforced(t, nsStore)
	sc := loadSample(t, "session_v1alpha1_sessioncluster_store.yaml", nsStore)
	start := time.Now()
	if err := e.c.Create(context.Background(), sc); err != nil {
		t.Fatalf("applying the Store sample: %v", err)
	}
	sc = e.waitSC(t, nsStore, storeSC, 5*time.Minute, "Ready=True", isReady)
	e.res.ReadySeconds = secs(time.Since(start))
	logf("store sample Ready after %.1f s; primary %s", e.res.ReadySeconds, sc.Status.Store.Primary)
	if out, err := e.kc("get", "sessionclusters", "-A"); err == nil {
		logf("kubectl get sessionclusters -A\n%s", out)
	}
	if sc.Status.Store == nil || sc.Status.Store.Primary == "" {
		t.Fatalf("Ready but status.store.primary is empty: %+v", sc.Status.Store)
	}
	if sc.Status.Store.ReadyReplicas != 3 || sc.Status.Store.SentinelsReady != 3 {
		t.Errorf("status.store: %d/3 servers, %d/3 sentinels ready", sc.Status.Store.ReadyReplicas, sc.Status.Store.SentinelsReady)
	}
}

func testStorePods(t *testing.T) {
	ctx := context.Background()
	// Ready is reached when every child is ready; the pods must agree.
	var pods []corev1.Pod
	err := poll(time.Minute, time.Second, func() (bool, error) {
		var err error
		pods, err = e.podsOf(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		n := 0
		for i := range pods {
			if podReady(&pods[i]) {
				n++
			}
		}
		e.res.PodsRunning, e.res.PodsTotal = n, len(pods)
		return n == len(pods) && n == 3+3+3, nil
	})
	if err != nil {
		t.Errorf("pods running and ready: %d of %d (want 9: 3 Redis, 3 Sentinels, 3 app): %v", e.res.PodsRunning, e.res.PodsTotal, err)
	}
	ops, err := e.operatorPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restricted := 0
	for _, p := range append(pods, ops...) {
		if probs := restrictedProblems(&p); len(probs) > 0 {
			t.Errorf("pod %s/%s breaks the restricted standard: %s", p.Namespace, p.Name, strings.Join(probs, "; "))
			continue
		}
		restricted++
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount > 0 {
				logf("note: %s/%s container %s restarted %d times before Ready", p.Namespace, p.Name, cs.Name, cs.RestartCount)
			}
		}
	}
	e.res.PodsRestricted = restricted
	logf("%d/%d store pods running and ready, %d pods (with the operator's) meet restricted", e.res.PodsRunning, e.res.PodsTotal, restricted)
}

// testStoreWiring checks what the apps are given and that the primary Service points at
// the pod Sentinel names primary.
func testStoreWiring(t *testing.T) {
	ctx := context.Background()
	sc, err := e.getSC(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-web"}, dep); err != nil {
		t.Fatal(err)
	}
	env := map[string]corev1.EnvVar{}
	for _, v := range dep.Spec.Template.Spec.Containers[0].Env {
		env[v.Name] = v
	}
	for _, name := range []string{"SESSION_MODE", "SESSION_TTL", "SESSION_REDIS_SENTINEL_ADDRS", "SESSION_REDIS_SENTINEL_MASTER",
		"SESSION_REDIS_ADDR", "SESSION_REDIS_USERNAME", "SESSION_REDIS_PASSWORD", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD",
		"SPRING_DATA_REDIS_SENTINEL_MASTER", "SPRING_DATA_REDIS_SENTINEL_NODES", "SPRING_DATA_REDIS_PASSWORD"} {
		if _, ok := env[name]; !ok {
			t.Errorf("app container lacks %s", name)
		}
	}
	for _, name := range []string{"SESSION_REDIS_PASSWORD", "REDIS_PASSWORD", "SPRING_DATA_REDIS_PASSWORD"} {
		if v := env[name]; v.Value != "" || v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s is not a secretKeyRef: %+v", name, v)
		}
	}
	bind := &corev1.Secret{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-session"}, bind); err != nil {
		t.Fatalf("binding Secret: %v", err)
	}
	for _, k := range []string{"type", "provider", "host", "port", "username", "password", "sentinel.master", "sentinel.nodes"} {
		if len(bind.Data[k]) == 0 {
			t.Errorf("binding Secret lacks %q", k)
		}
	}
	// Exactly one pod is labelled primary, the one the status names, and the primary
	// Service's endpoints are that pod.
	var primaries corev1.PodList
	if err := e.c.List(ctx, &primaries, client.InNamespace(nsStore), client.MatchingLabels{render.LabelInstance: storeSC,
		render.LabelComponent: render.ComponentStore, render.LabelRole: render.RolePrimary}); err != nil {
		t.Fatal(err)
	}
	if len(primaries.Items) != 1 || primaries.Items[0].Name != sc.Status.Store.Primary {
		var names []string
		for _, p := range primaries.Items {
			names = append(names, p.Name)
		}
		t.Fatalf("pods labelled primary: %v; status says %s", names, sc.Status.Store.Primary)
	}
	ip := primaries.Items[0].Status.PodIP
	err = poll(30*time.Second, 500*time.Millisecond, func() (bool, error) {
		var slices discoveryv1.EndpointSliceList
		if err := e.c.List(ctx, &slices, client.InNamespace(nsStore), client.MatchingLabels{discoveryv1.LabelServiceName: storeSC + "-store"}); err != nil {
			return false, err
		}
		var addrs []string
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				addrs = append(addrs, ep.Addresses...)
			}
		}
		return len(addrs) == 1 && addrs[0] == ip, nil
	})
	if err != nil {
		t.Errorf("Service %s-store does not point at the primary %s (%s) alone: %v", storeSC, sc.Status.Store.Primary, ip, err)
	}
}

// verifySummary is sessionload verify's JSON line.
type verifySummary struct {
	Checked    int `json:"checked"`
	OK         int `json:"ok"`
	Lost       int `json:"lost"`
	Unknown    int `json:"lost_unknown"`
	RolledBack int `json:"lost_rolled_back"`
	Unverified int `json:"unverified"`
	Examples   []struct {
		ID     string `json:"id"`
		Reason string `json:"reason"`
		Err    string `json:"err"`
	} `json:"examples"`
}

// verify reads every session back through url and counts the lost ones into the results.
func (e *env) verify(t *testing.T, ns, url, when string) verifySummary {
	t.Helper()
	out, err := e.sessionload(context.Background(), ns, "verify", "-urls", url, "-in", "/work/s.json", "-retries", "5", "-concurrency", "8")
	var v verifySummary
	if jerr := json.Unmarshal([]byte(lastLine(out)), &v); jerr != nil {
		t.Fatalf("verify %s: %v (%v)", when, jerr, err)
	}
	e.res.Verifications++
	e.res.SessionsLost += v.Lost
	logf("verify %s: %d checked, %d ok, %d lost, %d unverified", when, v.Checked, v.OK, v.Lost, v.Unverified)
	if v.Lost > 0 || v.Unverified > 0 || v.Checked != sessions {
		t.Errorf("verify %s: %+v", when, v)
	}
	return v
}

func testAppPodLoss(t *testing.T) {
	ctx := context.Background()
	e.startClient(t, nsStore)
	url := fmt.Sprintf("http://%s-web:8080", storeSC)
	out, err := e.sessionload(ctx, nsStore, "create", "-urls", url, "-n", fmt.Sprint(sessions), "-concurrency", "8", "-out", "/work/s.json")
	var c struct {
		Created      int `json:"created"`
		FailedLogins int `json:"failed_logins"`
		FailedBumps  int `json:"failed_bumps"`
	}
	if jerr := json.Unmarshal([]byte(lastLine(out)), &c); jerr != nil || err != nil {
		t.Fatalf("creating sessions through %s: %v %v: %s", url, err, jerr, out)
	}
	e.res.SessionsCreated = c.Created
	if c.Created != sessions || c.FailedBumps > 0 {
		t.Fatalf("created %d of %d sessions (%d bumps failed)", c.Created, sessions, c.FailedBumps)
	}
	logf("created %d sessions through Service %s", c.Created, url)

	pods, err := e.podsOf(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	var victim *corev1.Pod
	for i := range pods {
		if pods[i].Labels[render.LabelComponent] == render.ComponentApp {
			victim = &pods[i]
			break
		}
	}
	if victim == nil {
		t.Fatal("no app pod")
	}
	if err := e.c.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	logf("deleted app pod %s", victim.Name)
	e.verify(t, nsStore, url, "right after deleting app pod "+victim.Name)
	// And once the Deployment has replaced it.
	e.waitSC(t, nsStore, storeSC, 2*time.Minute, "Ready with 3 app pods", func(sc *sessionv1.SessionCluster) bool {
		return isReady(sc) && len(sc.Status.Apps) == 1 && sc.Status.Apps[0].ReadyReplicas == 3
	})
	err = poll(time.Minute, time.Second, func() (bool, error) {
		p := &corev1.Pod{}
		err := e.c.Get(ctx, client.ObjectKeyFromObject(victim), p)
		return apierrors.IsNotFound(err) || (err == nil && p.UID != victim.UID), nil
	})
	if err != nil {
		t.Fatalf("app pod %s still there: %v", victim.Name, err)
	}
	e.verify(t, nsStore, url, "after the app pod was replaced")
}

// runEvent is one line of sessionload run -events.
type runEvent struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	OK    bool      `json:"ok"`
}

type runSummary struct {
	Command         string  `json:"command"`
	Requests        int     `json:"requests"`
	OK              int     `json:"ok"`
	Failed          int     `json:"failed"`
	WentBackwards   int     `json:"went_backwards"`
	UnknownSessions int     `json:"unknown_sessions"`
	MaxGapSeconds   float64 `json:"max_gap_seconds"`
	FirstError      string  `json:"first_error"`
}

// runOut is what a sessionload run printed, and how it ended.
type runOut struct {
	out string
	err error
}

// finishedRun is the summary line of a finished sessionload run; no summary fails the test.
func finishedRun(t *testing.T, r runOut) runSummary {
	t.Helper()
	var sum runSummary
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		if strings.Contains(line, `"command":"run"`) {
			_ = json.Unmarshal([]byte(line), &sum)
		}
	}
	if sum.Command != "run" {
		t.Fatalf("sessionload run: %v: %s", r.err, tail(r.out, 5))
	}
	return sum
}

// succeededAt is when each successful request of a sessionload run completed.
func succeededAt(r runOut) []time.Time {
	var oks []time.Time
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var ev runEvent
		if strings.Contains(line, `"command":`) { // the summary, not a request
			continue
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.OK {
			oks = append(oks, ev.End)
		}
	}
	return oks
}

// failover takes the primary away with kill while four clients write sessions through the
// app Service, and checks what the issue asks: the status names a new primary and records
// the failover, Ready returns, no session or acknowledged write is lost; it measures the
// seconds from the kill to the first successful write.
func (e *env) failover(t *testing.T, kind string, kill func(pod string) (string, error)) failoverFacts {
	t.Helper()
	ctx := context.Background()
	sc, err := e.getSC(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	from := sc.Status.Store.Primary
	if from == "" || !isReady(sc) {
		t.Fatalf("before the failover: primary %q, %s", from, readyMessage(sc))
	}
	old := &corev1.Pod{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: from}, old); err != nil {
		t.Fatal(err)
	}
	f := failoverFacts{Kind: kind, From: from}

	done := make(chan runOut, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, writeRun+time.Minute)
		defer cancel()
		out, err := e.sessionload(rctx, nsStore, "run", "-urls", fmt.Sprintf("http://%s-web:8080", storeSC),
			"-in", "/work/s.json", "-duration", writeRun.String(), "-clients", "4", "-interval", "10ms",
			"-timeout", "3s", "-events", "/dev/stdout")
		done <- runOut{out, err}
	}()
	time.Sleep(3 * time.Second)

	killedAt := time.Now()
	f.Method, err = kill(from)
	if err != nil {
		t.Fatalf("taking primary %s away: %v", from, err)
	}
	logf("%s: primary %s taken away (%s)", kind, from, f.Method)

	// The status names another primary, records the failover, and Ready returns with
	// every server ready again.
	var statusAt, readyAt time.Time
	var last *sessionv1.SessionCluster
	err = poll(3*time.Minute, 100*time.Millisecond, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		last = sc
		st := sc.Status.Store
		if st == nil || st.Primary == "" || st.Primary == from {
			return false, nil
		}
		if statusAt.IsZero() {
			statusAt = time.Now()
		}
		if st.LastFailover == nil || st.LastFailover.From != from || st.LastFailover.To != st.Primary {
			return false, nil
		}
		if isReady(sc) && st.ReadyReplicas == 3 && st.SentinelsReady == 3 {
			readyAt = time.Now()
			return true, nil
		}
		return false, nil
	})
	if last != nil && last.Status.Store != nil {
		f.To = last.Status.Store.Primary
		if lf := last.Status.Store.LastFailover; lf != nil {
			f.RecordedTime = lf.Time.UTC().Format(time.RFC3339)
			if lf.Duration != nil {
				f.RecordedDuration = lf.Duration.Duration.String()
			}
		}
	}
	if !statusAt.IsZero() {
		f.StatusSeconds = secs(statusAt.Sub(killedAt))
	}
	if err != nil {
		t.Errorf("%s: after losing %s: %v; last status %s, store %+v", kind, from, err, readyMessage(last), last.Status.Store)
	} else {
		f.ReadySeconds = secs(readyAt.Sub(killedAt))
		logf("%s: status names %s after %.1f s, lastFailover %s→%s (duration %q), Ready again after %.1f s",
			kind, f.To, f.StatusSeconds, from, f.To, f.RecordedDuration, f.ReadySeconds)
	}

	r := <-done
	sum := finishedRun(t, r)
	oks := succeededAt(r)
	f.Requests, f.Failed, f.MaxGapSeconds = sum.Requests, sum.Failed, sum.MaxGapSeconds
	f.WentBackwards, f.UnknownSession = sum.WentBackwards, sum.UnknownSessions
	resumed, ok := writesResumed(oks, killedAt)
	if !ok {
		t.Errorf("%s: no successful write after the kill in %s (%d requests, %d failed: %s)", kind, writeRun, sum.Requests, sum.Failed, sum.FirstError)
	} else {
		f.WriteGapSeconds = secs(resumed.Sub(killedAt))
	}
	logf("%s: writes resumed %.2f s after the kill; %d requests, %d failed, longest gap %.2f s, went backwards %d, unknown %d",
		kind, f.WriteGapSeconds, sum.Requests, sum.Failed, sum.MaxGapSeconds, sum.WentBackwards, sum.UnknownSessions)
	if sum.WentBackwards > 0 || sum.UnknownSessions > 0 {
		t.Errorf("%s: writers saw acknowledged data lost: went_backwards %d, unknown_sessions %d", kind, sum.WentBackwards, sum.UnknownSessions)
	}
	e.res.SessionsLost += sum.UnknownSessions

	v := e.verify(t, nsStore, fmt.Sprintf("http://%s-web:8080", storeSC), "after the "+kind+" failover")
	f.Lost = v.Lost

	// The old primary's pod is back (recreated or restarted) and follows the new one.
	err = poll(3*time.Minute, time.Second, func() (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: from}, p); err != nil {
			return false, nil
		}
		f.OldPrimaryRole = p.Labels[render.LabelRole]
		restarted := p.UID != old.UID
		for _, cs := range p.Status.ContainerStatuses {
			for _, ocs := range old.Status.ContainerStatuses {
				if cs.Name == ocs.Name && cs.RestartCount > ocs.RestartCount {
					restarted = true
				}
			}
		}
		return restarted && podReady(p) && f.OldPrimaryRole == render.RoleReplica, nil
	})
	if err != nil {
		t.Errorf("%s: old primary %s did not come back as a ready replica (role %q): %v", kind, from, f.OldPrimaryRole, err)
	}
	e.res.Failovers = append(e.res.Failovers, f)
	e.saveFailoverLogs(kind, from, f.To)
	return f
}

// saveFailoverLogs keeps the story of a failover as the servers and Sentinels told it, in
// bin/results/e2e-logs/<kind>/, whether the step passed or not.
func (e *env) saveFailoverLogs(kind, from, to string) {
	dir := filepath.Join(e.root, "bin/results/e2e-logs", kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	save := func(name string, args ...string) {
		out, err := e.kc(append([]string{"-n", nsStore, "logs", "--timestamps"}, args...)...)
		if err != nil {
			out += "\n" + err.Error() + "\n"
		}
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
	}
	save("old-primary-"+from+".txt", from)
	save("old-primary-"+from+"-previous.txt", from, "--previous")
	if to != "" {
		save("new-primary-"+to+".txt", to)
	}
	for i := 0; i < 3; i++ {
		pod := fmt.Sprintf("%s-sentinel-%d", storeSC, i)
		save(pod+".txt", pod)
	}
	ops, _ := e.operatorPods(context.Background())
	for _, p := range ops {
		out, _ := e.kc("-n", operatorNS, "logs", p.Name)
		_ = os.WriteFile(filepath.Join(dir, "operator-"+p.Name+".txt"), []byte(out), 0o644)
	}
}

// writesResumed finds when writing recovered from the kill: the end of the longest stretch
// without a successful write among those that end after the kill. A SIGKILLed primary
// stops writes at once; a deleted one serves on while its preStop hands over, then pauses
// writes for the switch, so "the first write after the kill" would say nothing there.
func writesResumed(oks []time.Time, killedAt time.Time) (time.Time, bool) {
	sort.Slice(oks, func(i, j int) bool { return oks[i].Before(oks[j]) })
	var best time.Time
	var bestGap time.Duration = -1
	prev := killedAt // the first stretch is counted from the kill
	for _, t := range oks {
		if !t.After(killedAt) {
			continue
		}
		if gap := t.Sub(prev); gap > bestGap {
			best, bestGap = t, gap
		}
		prev = t
	}
	return best, bestGap >= 0
}

// killRedis SIGKILLs the Redis server of pod: no preStop, no SHUTDOWN, no goodbye to the
// replicas or Sentinels; the kubelet restarts the container in place. On the local cluster
// and kind the signal comes from the node's container runtime (ctr tasks kill); elsewhere
// through kubectl exec, which works because the store's pods share their process
// namespace, so redis-server is not the namespace's init (the kernel ignores a SIGKILL
// sent to init from inside its namespace: `kill -9 1` would do nothing). As a last resort
// the pod is force-deleted. E2E_KILL=runtime|exec|force picks one.
func (e *env) killRedis(pod string) (string, error) { return e.killRedisIn(nsStore, pod) }

// killRedisIn is killRedis for a store pod in namespace ns.
func (e *env) killRedisIn(ns, pod string) (string, error) {
	ctx := context.Background()
	p := &corev1.Pod{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, p); err != nil {
		return "", err
	}
	var id string
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "redis" {
			id = strings.TrimPrefix(cs.ContainerID, "containerd://")
		}
	}
	method := os.Getenv("E2E_KILL")
	sock := filepath.Join(e.root, "bin/cluster/state/run/containerd.sock")
	if method == "" {
		method = "exec"
		if id != "" && ((e.cluster == "local" && fileExists(sock)) || e.cluster == "kind") {
			method = "runtime"
		}
	}
	switch method {
	case "runtime":
		var cmd *exec.Cmd
		if e.cluster == "kind" {
			node := envOr("KIND_CLUSTER_NAME", "session-operator") + "-control-plane"
			cmd = exec.Command("docker", "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id)
		} else {
			cmd = exec.Command("ctr", "--address", sock, "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
		}
		return "SIGKILL to redis-server from the node's runtime (ctr tasks kill)", nil
	case "exec":
		script := `for p in /proc/[0-9]*; do if [ "$(cat $p/comm 2>/dev/null)" = redis-server ]; then kill -9 ${p#/proc/} && echo killed ${p#/proc/}; fi; done`
		out, err := e.kc("-n", ns, "exec", pod, "-c", "redis", "--", "sh", "-c", script)
		if err != nil || !strings.Contains(out, "killed") {
			return "", fmt.Errorf("kill -9 redis-server in %s: %v: %q", pod, err, out)
		}
		return "kill -9 of redis-server through kubectl exec (" + strings.TrimSpace(out) + ")", nil
	case "force":
		return "kubectl delete pod --grace-period=0 --force", e.c.Delete(ctx, p, client.GracePeriodSeconds(0))
	}
	return "", fmt.Errorf("E2E_KILL=%s: want runtime, exec or force", method)
}

// testNoZombies: the probes and scripts fork short-lived processes in the Redis and
// Sentinel containers every few seconds; after minutes of that, no pod holds zombies (they
// piled up at ~18 a minute per pod while redis-server was the pod's PID 1).
func testNoZombies(t *testing.T) {
	ctx := context.Background()
	pods, err := e.podsOf(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range pods {
		c := p.Labels[render.LabelComponent]
		if c != render.ComponentStore && c != render.ComponentSentinel {
			continue
		}
		// /proc/*/status of every process the container sees (the whole pod when the
		// process namespace is shared).
		out, err := e.kc("-n", nsStore, "exec", p.Name, "--", "sh", "-c", `grep -s '^State:' /proc/[0-9]*/status || true`)
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		zombies := strings.Count(out, "zombie")
		if zombies > 1 {
			t.Errorf("pod %s holds %d zombie processes after %s of probes", p.Name, zombies, time.Since(p.CreationTimestamp.Time).Round(time.Second))
		}
		checked++
	}
	logf("%d store and sentinel pods checked for zombie processes", checked)
}

// ---------------------------------------------------------------- operator ------

// testOperatorRestart deletes the operator's pod and checks that its successor, once it
// has reconciled, recreated nothing (every child keeps its UID and generation), orphaned
// nothing, and left the SessionCluster Ready.
func testOperatorRestart(t *testing.T) {
	ctx := context.Background()
	before, err := e.children(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	if probs := ownershipProblems(before, storeSC); len(probs) > 0 {
		t.Errorf("before the restart: %s", strings.Join(probs, "; "))
	}
	ops, err := e.operatorPods(ctx)
	if err != nil || len(ops) != 1 {
		t.Fatalf("operator pods: %d, %v", len(ops), err)
	}
	oldPod := ops[0]
	start := time.Now()
	if err := e.c.Delete(ctx, &oldPod); err != nil {
		t.Fatal(err)
	}
	logf("deleted operator pod %s", oldPod.Name)
	var newPod string
	err = poll(3*time.Minute, 500*time.Millisecond, func() (bool, error) {
		ops, err := e.operatorPods(ctx)
		if err != nil {
			return false, err
		}
		for i := range ops {
			if ops[i].UID != oldPod.UID && podReady(&ops[i]) && strings.HasPrefix(e.leaseHolder(ctx), ops[i].Name) {
				newPod = ops[i].Name
				n, err := e.reconcileSuccesses(ctx, newPod)
				return err == nil && n >= 1, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the new operator pod did not take the lease and reconcile: %v (lease holder %q)", err, e.leaseHolder(ctx))
	}
	e.res.OperatorRestartSeconds = secs(time.Since(start))
	logf("operator pod %s leads and has reconciled, %.1f s after the delete", newPod, e.res.OperatorRestartSeconds)
	// Give it a few more passes (a resync, the store observation) to do anything wrong.
	time.Sleep(10 * time.Second)
	after, err := e.children(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	e.res.ChildrenChecked = len(before)
	var diffs []string
	for key, b := range before {
		a, ok := after[key]
		switch {
		case !ok:
			diffs = append(diffs, key+" is gone")
		case a.UID != b.UID:
			diffs = append(diffs, key+" was recreated")
		case a.Generation != b.Generation:
			diffs = append(diffs, fmt.Sprintf("%s changed spec (generation %d → %d)", key, b.Generation, a.Generation))
		}
	}
	for key := range after {
		if _, ok := before[key]; !ok {
			diffs = append(diffs, key+" is new")
		}
	}
	sort.Strings(diffs)
	e.res.ChildrenRecreated = len(diffs)
	if len(diffs) > 0 {
		t.Errorf("after the operator restart: %s", strings.Join(diffs, "; "))
	}
	if probs := ownershipProblems(after, storeSC); len(probs) > 0 {
		t.Errorf("after the restart: %s", strings.Join(probs, "; "))
	}
	sc, err := e.getSC(ctx, nsStore, storeSC)
	if err != nil || !isReady(sc) {
		t.Errorf("after the restart: %v %s", err, readyMessage(sc))
	}
	logf("operator restart: %d children checked, none recreated, changed or orphaned: %v", len(before), len(diffs) == 0)
	e.verify(t, nsStore, fmt.Sprintf("http://%s-web:8080", storeSC), "after the operator restart")
}

// ---------------------------------------------------------------- other modes ---

func testSticky(t *testing.T) {
	ctx := context.Background()
	e.createNamespace(t, nsSticky)
	sc := loadSample(t, "session_v1alpha1_sessioncluster_sticky.yaml", nsSticky)
	// Ready needs the Ingress served: the sample's class is the local cluster's Traefik here.
	throughTraefik(sc, sc.Spec.Ingress.Host)
	start := time.Now()
	if err := e.c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	sc = e.waitSC(t, nsSticky, stickySC, 3*time.Minute, "Ready=True", isReady)
	e.res.StickyReadySeconds = secs(time.Since(start))
	logf("sticky sample Ready after %.1f s, url %q", e.res.StickyReadySeconds, sc.Status.URL)

	name := stickySC + "-web"
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsSticky, Name: name}, dep); err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != 2 {
		t.Errorf("Deployment %s: %d ready, want 2", name, dep.Status.ReadyReplicas)
	}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsSticky, Name: name}, &corev1.Service{}); err != nil {
		t.Errorf("Service %s: %v", name, err)
	}
	svc := &corev1.Service{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsSticky, Name: name}, svc); err != nil {
		t.Fatalf("Service %s: %v", name, err)
	}
	want := map[string]string{
		"traefik.ingress.kubernetes.io/service.sticky.cookie":      "true",
		"traefik.ingress.kubernetes.io/service.sticky.cookie.name": "route",
		"traefik.ingress.kubernetes.io/service.sticky.cookie.path": "/",
	}
	for k, v := range want {
		if svc.Annotations[k] != v {
			t.Errorf("Service annotation %s = %q, want %q", k, svc.Annotations[k], v)
		}
	}
	ing := &networkingv1.Ingress{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsSticky, Name: name}, ing); err != nil {
		t.Fatalf("Ingress %s: %v", name, err)
	}
	if len(ing.Status.LoadBalancer.Ingress) == 0 {
		t.Errorf("Ingress %s Ready without an address", name)
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != routingClass ||
		len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "catalog.example.com" {
		t.Errorf("Ingress spec: class %v, rules %+v", ing.Spec.IngressClassName, ing.Spec.Rules)
	}
	// No store for a sticky-only cluster.
	var sts appsv1.StatefulSetList
	if err := e.c.List(ctx, &sts, client.InNamespace(nsSticky)); err != nil || len(sts.Items) > 0 {
		t.Errorf("sticky-only cluster has StatefulSets: %d (%v)", len(sts.Items), err)
	}
	e.checkPodsRestricted(t, nsSticky, stickySC, 2)
}

func testClustered(t *testing.T) {
	ctx := context.Background()
	e.createNamespace(t, nsClustered)
	sc := loadSample(t, "session_v1alpha1_sessioncluster_clustered.yaml", nsClustered)
	start := time.Now()
	if err := e.c.Create(ctx, sc); err != nil {
		t.Fatal(err)
	}
	e.waitSC(t, nsClustered, clusteredSC, 3*time.Minute, "Ready=True", isReady)
	e.res.ClusteredReadySeconds = secs(time.Since(start))
	logf("clustered sample Ready after %.1f s", e.res.ClusteredReadySeconds)

	peers := &corev1.Service{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsClustered, Name: clusteredSC + "-web-peers"}, peers); err != nil {
		t.Fatalf("peer Service: %v", err)
	}
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("peer Service: clusterIP %q, publishNotReadyAddresses %v; want headless and true", peers.Spec.ClusterIP, peers.Spec.PublishNotReadyAddresses)
	}
	protos := map[corev1.Protocol]bool{}
	for _, p := range peers.Spec.Ports {
		if p.Port == 7946 {
			protos[p.Protocol] = true
		}
	}
	if !protos[corev1.ProtocolTCP] || !protos[corev1.ProtocolUDP] {
		t.Errorf("peer Service ports %+v: want 7946 TCP and UDP", peers.Spec.Ports)
	}
	pdb := &policyv1.PodDisruptionBudget{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsClustered, Name: clusteredSC + "-web"}, pdb); err != nil {
		t.Errorf("PodDisruptionBudget: %v", err)
	}
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsClustered, Name: clusteredSC + "-web"}, dep); err != nil {
		t.Fatal(err)
	}
	var peersDNS string
	for _, v := range dep.Spec.Template.Spec.Containers[0].Env {
		if v.Name == "SESSION_PEERS_DNS" {
			peersDNS = v.Value
		}
	}
	if !strings.HasPrefix(peersDNS, clusteredSC+"-web-peers.") {
		t.Errorf("SESSION_PEERS_DNS = %q", peersDNS)
	}
	pods := e.checkPodsRestricted(t, nsClustered, clusteredSC, 3)

	// The pods found each other through the peer Service: sessions made on one pod are
	// read back on each of the others.
	if len(pods) < 2 {
		return
	}
	e.startClient(t, nsClustered)
	first := fmt.Sprintf("http://%s:8080", pods[0].Status.PodIP)
	out, err := e.sessionload(ctx, nsClustered, "create", "-urls", first, "-n", "100", "-out", "/work/s.json")
	if err != nil {
		t.Fatalf("creating sessions on %s: %v: %s", pods[0].Name, err, out)
	}
	for _, p := range pods[1:] {
		url := fmt.Sprintf("http://%s:8080", p.Status.PodIP)
		var v verifySummary
		err := poll(30*time.Second, time.Second, func() (bool, error) {
			out, _ := e.sessionload(ctx, nsClustered, "verify", "-urls", url, "-in", "/work/s.json")
			if json.Unmarshal([]byte(lastLine(out)), &v) != nil {
				return false, nil
			}
			return v.OK == 100, nil
		})
		if err != nil {
			t.Errorf("pod %s has %d of the 100 sessions made on %s", p.Name, v.OK, pods[0].Name)
			continue
		}
		e.res.ClusteredReplicated += v.OK
	}
	logf("clustered: 100 sessions made on %s read back on the %d other pods", pods[0].Name, len(pods)-1)
}

// checkPodsRestricted waits for want ready pods of the instance and checks their security
// context.
func (e *env) checkPodsRestricted(t *testing.T, ns, instance string, want int) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	err := poll(time.Minute, time.Second, func() (bool, error) {
		pods, err := e.podsOf(context.Background(), ns, instance)
		if err != nil {
			return false, err
		}
		ready = ready[:0]
		for i := range pods {
			if podReady(&pods[i]) {
				ready = append(ready, pods[i])
			}
		}
		return len(ready) == want && len(pods) == want, nil
	})
	if err != nil {
		t.Errorf("%s: %d pods ready, want %d: %v", ns, len(ready), want, err)
	}
	for _, p := range ready {
		if probs := restrictedProblems(&p); len(probs) > 0 {
			t.Errorf("pod %s/%s: %s", ns, p.Name, strings.Join(probs, "; "))
		}
	}
	return ready
}

// ---------------------------------------------------------------- deletion ------

// testDeleteGC deletes the Store SessionCluster: the garbage collector removes every child
// (and their pods), and the claims stay, as spec.store.persistence.deleteClaim=false says.
func testDeleteGC(t *testing.T) {
	ctx := context.Background()
	kids, err := e.children(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.getSC(ctx, nsStore, storeSC)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.c.Delete(ctx, sc); err != nil {
		t.Fatal(err)
	}
	var left []string
	err = poll(4*time.Minute, time.Second, func() (bool, error) {
		now, err := e.children(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		left = left[:0]
		for key, c := range now {
			if c.Kind != "PersistentVolumeClaim" {
				left = append(left, key)
			}
		}
		gone := apierrors.IsNotFound(e.c.Get(ctx, client.ObjectKeyFromObject(sc), &sessionv1.SessionCluster{}))
		return gone && len(left) == 0, nil
	})
	sort.Strings(left)
	if err != nil {
		t.Fatalf("after deleting SessionCluster %s, still there: %v (%v)", storeSC, left, err)
	}
	e.res.DeleteGCSeconds = secs(time.Since(start))
	var claims []string
	for key, c := range kids {
		if c.Kind == "PersistentVolumeClaim" {
			claims = append(claims, c.Name)
			pvc := &corev1.PersistentVolumeClaim{}
			if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: c.Name}, pvc); err != nil {
				t.Errorf("claim %s: %v (deleteClaim is false: it must be kept)", key, err)
				continue
			}
			if pvc.UID != c.UID || pvc.Status.Phase != corev1.ClaimBound {
				t.Errorf("claim %s: recreated or not bound (%s)", c.Name, pvc.Status.Phase)
				continue
			}
			e.res.PVCsKept++
		}
	}
	if len(claims) != 3 {
		t.Errorf("claims before the delete: %v, want 3", claims)
	}
	logf("SessionCluster %s deleted: %d children gone in %.1f s, %d claims kept", storeSC, len(kids)-len(claims), e.res.DeleteGCSeconds, e.res.PVCsKept)
}

// ---------------------------------------------------------------- uninstall -----

// testUninstall runs helm uninstall with the Sticky and Clustered SessionClusters still
// there, and one wiring the user's own Deployment (its finalizer needs the manager, which
// the chart's pre-delete hook keeps for it), and checks that nothing of the operator is left: no CRD (and so no
// SessionCluster, and their children collected), no cluster-wide RBAC, nothing in the
// release namespace but what every namespace has.
func testUninstall(t *testing.T) {
	ctx := context.Background()
	wired := e.wireForUninstall(t)
	start := time.Now()
	if err := e.run(os.Stderr, nil, e.helm, "uninstall", release, "--namespace", operatorNS, "--kubeconfig", e.kubeconfig, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	crdGone := func() (bool, error) {
		_, err := e.kc("get", "crd", "sessionclusters.session.sessionops.dev")
		return err != nil && strings.Contains(err.Error(), "NotFound"), nil
	}
	if err := poll(2*time.Minute, time.Second, crdGone); err != nil {
		t.Errorf("the CRD is still there: %v", err)
	}
	// The chart's pre-delete hook let the manager unwire the user's workload before it went.
	if wired {
		ok := e.checkUnwiredAfterUninstall(t)
		e.res.UninstallUnwired = &ok
	}
	// The SessionClusters went with the CRD; their children follow.
	for _, ns := range []struct{ ns, name string }{{nsSticky, stickySC}, {nsClustered, clusteredSC}, {nsStore, storeSC}, {nsByo, byoSC}} {
		var left []string
		err := poll(3*time.Minute, time.Second, func() (bool, error) {
			kids, err := e.children(ctx, ns.ns, ns.name)
			if err != nil {
				return false, err
			}
			left = left[:0]
			for key, c := range kids {
				if c.Kind != "PersistentVolumeClaim" {
					left = append(left, key)
				}
			}
			return len(left) == 0, nil
		})
		if err != nil {
			t.Errorf("%s: children of %s left after uninstall: %v", ns.ns, ns.name, left)
		}
	}
	e.res.UninstallSeconds = secs(time.Since(start))

	// Everything else: list every namespaced kind in the release and test namespaces, and
	// cluster-wide RBAC, CRDs and webhooks naming the operator.
	kinds, err := e.kc("api-resources", "--verbs=list", "--namespaced", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	for _, k := range strings.Fields(kinds) {
		if k != "events" && k != "events.events.k8s.io" {
			list = append(list, k)
		}
	}
	expected := func(ns, obj string) bool {
		switch {
		case obj == "configmap/kube-root-ca.crt", obj == "serviceaccount/default":
			return true // every namespace has them
		case ns != operatorNS && strings.HasPrefix(obj, "pod/"+clientPod):
			return true // the test's own client
		case ns == nsStore && strings.HasPrefix(obj, "persistentvolumeclaim/data-"+storeSC+"-store-"):
			return true // kept on purpose (deleteClaim: false)
		}
		return false
	}
	var leftovers []string
	for _, ns := range []string{operatorNS, nsSticky, nsClustered, nsStore} {
		out, err := e.kc("get", strings.Join(list, ","), "-n", ns, "-o", "name", "--ignore-not-found")
		if err != nil {
			t.Errorf("listing %s: %v", ns, err)
			continue
		}
		for _, obj := range strings.Fields(out) {
			short := shortName(obj)
			if expected(ns, short) {
				continue
			}
			leftovers = append(leftovers, ns+"/"+short)
		}
	}
	out, err := e.kc("get", "clusterroles,clusterrolebindings,crd,validatingwebhookconfigurations,mutatingwebhookconfigurations,apiservices", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range strings.Fields(out) {
		if strings.Contains(obj, "session") {
			leftovers = append(leftovers, shortName(obj))
		}
	}
	sort.Strings(leftovers)
	e.res.UninstallLeftovers = leftovers
	// The leader election Lease is written by the running manager, not by the chart, so
	// helm cannot remove it; it is the one thing allowed to remain (it names no pod that
	// exists and expires on its own). Anything else is a leak.
	var leaks []string
	for _, l := range leftovers {
		if l != operatorNS+"/lease/"+leaseName {
			leaks = append(leaks, l)
		}
	}
	if len(leaks) > 0 {
		t.Errorf("left behind after helm uninstall: %s", strings.Join(leaks, ", "))
	}
	logf("helm uninstall: %.1f s; left behind: %v (the Lease is the manager's own)", e.res.UninstallSeconds, leftovers)
}

// shortName turns "deployment.apps/x" into "deployment/x".
func shortName(obj string) string {
	kind, name, _ := strings.Cut(obj, "/")
	kind, _, _ = strings.Cut(kind, ".")
	return kind + "/" + name
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
