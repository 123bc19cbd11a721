//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// Bring your own app on the real cluster: the user's Deployment of the reference app,
// applied with plain kubectl before any SessionCluster, is wired by the operator, serves
// sessions from the store (they survive the loss of every app pod) and through a failover,
// keeps its wiring across a re-apply by its own manager, and is left in place, unwired,
// when the SessionCluster is deleted.

const (
	nsByo       = "e2e-byo"
	byoSC       = "shop-byo"
	byoWorkload = "my-shop"
	byoSessions = 200
	byoWriteRun = 40 * time.Second
)

// byoFacts is what the scenario measured.
type byoFacts struct {
	WiredSeconds    float64 `json:"wired_seconds"` // SessionCluster created to Ready with the wired app
	SessionsCreated int     `json:"sessions_created"`
	Lost            int     `json:"sessions_lost"`
	FailoverFrom    string  `json:"failover_from"`
	FailoverTo      string  `json:"failover_to"`
	Requests        int     `json:"requests"`
	Failed          int     `json:"failed"`
	WentBackwards   int     `json:"went_backwards"`
	Unknown         int     `json:"unknown_sessions"`
	UnwiredSeconds  float64 `json:"unwired_seconds"` // SessionCluster deleted to the workload unwired and ready
}

// TestBringYourOwnApp runs the scenario alone: E2E_RUN=TestBringYourOwnApp make test-e2e.
func TestBringYourOwnApp(t *testing.T) {
	step(t, "byo/wired-store-failover", testBringYourOwnApp)
	step(t, "byo/cleanup", func(t *testing.T) {
		if err := e.c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsByo}}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	})
}

// applyUserDeployment applies examples/bring-your-own/deployment.yaml with plain
// kubectl apply (client-side, as the user's own manager), on this run's app image.
func applyUserDeployment(t *testing.T, extraLabel string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.root, "examples/bring-your-own/deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(string(raw), "image: ghcr.io/sessionops/session-app:dev", "image: "+appImage+"\n        imagePullPolicy: IfNotPresent")
	if extraLabel != "" {
		doc = strings.Replace(doc, "labels: {app.kubernetes.io/name: my-shop, app.kubernetes.io/instance: my-shop}",
			"labels: {app.kubernetes.io/name: my-shop, app.kubernetes.io/instance: my-shop, "+extraLabel+"}", 1)
	}
	f := filepath.Join(t.TempDir(), "deployment.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := e.kc("-n", nsByo, "apply", "-f", f); err != nil {
		t.Fatalf("kubectl apply of the user's Deployment: %v: %s", err, out)
	}
}

func (e *env) userDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: nsByo, Name: byoWorkload}, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func envNamed(c corev1.Container, name string) *corev1.EnvVar {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return nil
	}
	return &c.Env[i]
}

// deploymentRolledOut reports whether every replica runs the current template.
func deploymentRolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.Replicas == want
}

func (e *env) waitUserDeployment(t *testing.T, what string, cond func(*appsv1.Deployment) bool) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	err := poll(4*time.Minute, time.Second, func() (bool, error) {
		d = &appsv1.Deployment{}
		if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: nsByo, Name: byoWorkload}, d); err != nil {
			return false, err
		}
		return cond(d), nil
	})
	if err != nil {
		t.Fatalf("user's Deployment %s: %v; status %+v", what, err, d.Status)
	}
	return d
}

func testBringYourOwnApp(t *testing.T) {
	ctx := context.Background()
	f := &byoFacts{}
	e.res.BringYourOwn = f
	e.createNamespace(t, nsByo)

	// 1. The user's app runs before any SessionCluster, its sessions in memory.
	applyUserDeployment(t, "")
	e.waitUserDeployment(t, "ready before wiring", deploymentRolledOut)

	// 2. The SessionCluster wires it.
	sc := loadSample(t, "session_v1alpha1_sessioncluster_workloadref.yaml", nsByo)
	start := time.Now()
	if err := e.c.Create(ctx, sc); err != nil {
		t.Fatalf("applying the workloadRef sample: %v", err)
	}
	e.waitSC(t, nsByo, byoSC, 6*time.Minute, "Ready with the wired app", func(sc *sessionv1.SessionCluster) bool {
		return isReady(sc) && len(sc.Status.Apps) == 1 && sc.Status.Apps[0].ReadyReplicas == 2
	})
	d := e.waitUserDeployment(t, "rolled out wired", deploymentRolledOut)
	f.WiredSeconds = secs(time.Since(start))
	logf("byo: user's Deployment wired and Ready after %.1f s", f.WiredSeconds)
	if len(d.OwnerReferences) != 0 {
		t.Errorf("the user's Deployment got owner references %v", d.OwnerReferences)
	}
	if d.Labels[render.LabelWiredTo] != byoSC || d.Annotations["kubectl.kubernetes.io/last-applied-configuration"] == "" {
		t.Errorf("labels %v, last-applied kept %v", d.Labels, d.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "")
	}
	web := d.Spec.Template.Spec.Containers[0]
	if pw := envNamed(web, "SESSION_REDIS_PASSWORD"); pw == nil || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil {
		t.Errorf("SESSION_REDIS_PASSWORD %+v: want a secretKeyRef", pw)
	}
	if c := envNamed(web, "SESSION_COOKIE_NAME"); c == nil || c.Value != "shop_session" {
		t.Errorf("the user's SESSION_COOKIE_NAME %+v lost", c)
	}

	// 3. Sessions live in the store: they survive the loss of every app pod at once.
	e.startClient(t, nsByo)
	url := fmt.Sprintf("http://%s-web:8080", byoSC)
	out, err := e.sessionload(ctx, nsByo, "create", "-urls", url, "-n", fmt.Sprint(byoSessions), "-concurrency", "8", "-out", "/work/s.json")
	var c struct {
		Created int `json:"created"`
	}
	if jerr := json.Unmarshal([]byte(lastLine(out)), &c); jerr != nil || err != nil || c.Created != byoSessions {
		t.Fatalf("creating sessions through %s: %v %v: %s", url, err, jerr, out)
	}
	f.SessionsCreated = c.Created
	pods := &corev1.PodList{}
	if err := e.c.List(ctx, pods, client.InNamespace(nsByo), client.MatchingLabels{"app.kubernetes.io/instance": byoWorkload}); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if err := e.c.Delete(ctx, &pods.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	logf("byo: deleted all %d app pods", len(pods.Items))
	e.waitUserDeployment(t, "replaced its pods", func(d *appsv1.Deployment) bool {
		if !deploymentRolledOut(d) {
			return false
		}
		now := &corev1.PodList{}
		if err := e.c.List(ctx, now, client.InNamespace(nsByo), client.MatchingLabels{"app.kubernetes.io/instance": byoWorkload}); err != nil {
			return false
		}
		for _, p := range now.Items {
			if slices.ContainsFunc(pods.Items, func(o corev1.Pod) bool { return o.UID == p.UID }) || !podReady(&p) {
				return false
			}
		}
		return len(now.Items) == 2
	})
	f.Lost += e.verifyByo(t, url, "after every app pod was replaced")

	// 4. Through a failover: the primary is deleted while four clients write.
	sc, err = e.getSC(ctx, nsByo, byoSC)
	if err != nil {
		t.Fatal(err)
	}
	f.FailoverFrom = sc.Status.Store.Primary
	done := make(chan runOut, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, byoWriteRun+time.Minute)
		defer cancel()
		out, err := e.sessionload(rctx, nsByo, "run", "-urls", url, "-in", "/work/s.json", "-duration", byoWriteRun.String(),
			"-clients", "4", "-interval", "10ms", "-timeout", "3s")
		done <- runOut{out, err}
	}()
	time.Sleep(3 * time.Second)
	if err := e.c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsByo, Name: f.FailoverFrom}}); err != nil {
		t.Fatalf("deleting primary %s: %v", f.FailoverFrom, err)
	}
	sc = e.waitSC(t, nsByo, byoSC, 4*time.Minute, "a new primary and Ready", func(sc *sessionv1.SessionCluster) bool {
		st := sc.Status.Store
		return isReady(sc) && st != nil && st.Primary != "" && st.Primary != f.FailoverFrom && st.ReadyReplicas == 3
	})
	f.FailoverTo = sc.Status.Store.Primary
	r := <-done
	sum := finishedRun(t, r)
	f.Requests, f.Failed, f.WentBackwards, f.Unknown = sum.Requests, sum.Failed, sum.WentBackwards, sum.UnknownSessions
	logf("byo: failover %s→%s under writes: %d requests, %d failed, went backwards %d, unknown %d",
		f.FailoverFrom, f.FailoverTo, f.Requests, f.Failed, f.WentBackwards, f.Unknown)
	if f.WentBackwards > 0 || f.Unknown > 0 || f.Requests == 0 {
		t.Errorf("failover lost acknowledged writes: %+v (first error %q)", sum, sum.FirstError)
	}
	f.Lost += e.verifyByo(t, url, "after the failover")

	// 5. The user's manager applies its manifest again (as a chart upgrade would): the
	// wiring stays and the pods do not roll. (The generation moves anyway: a Deployment
	// counts annotation changes, here kubectl's last-applied-configuration.)
	before := e.userDeployment(t)
	applyUserDeployment(t, "release: v2")
	time.Sleep(5 * time.Second)
	after := e.userDeployment(t)
	if after.Labels["release"] != "v2" || envNamed(after.Spec.Template.Spec.Containers[0], "SESSION_REDIS_SENTINEL_ADDRS") == nil ||
		!equality.Semantic.DeepEqual(after.Spec.Template, before.Spec.Template) {
		t.Errorf("after the re-apply: labels %v, template changed %v, env %v", after.Labels,
			!equality.Semantic.DeepEqual(after.Spec.Template, before.Spec.Template), after.Spec.Template.Spec.Containers[0].Env)
	}

	// 6. Deleting the SessionCluster leaves the workload, unwired and running.
	start = time.Now()
	if err := e.c.Delete(ctx, sc); err != nil {
		t.Fatal(err)
	}
	d = e.waitUserDeployment(t, "unwired and rolled out", func(d *appsv1.Deployment) bool {
		_, wired := d.Labels[render.LabelWiredTo]
		return !wired && deploymentRolledOut(d)
	})
	f.UnwiredSeconds = secs(time.Since(start))
	for _, ev := range d.Spec.Template.Spec.Containers[0].Env {
		if strings.HasPrefix(ev.Name, "SESSION_REDIS") || strings.HasPrefix(ev.Name, "REDIS_") {
			t.Errorf("wiring left after the SessionCluster's deletion: %s", ev.Name)
		}
	}
	if envNamed(d.Spec.Template.Spec.Containers[0], "SESSION_COOKIE_NAME") == nil || d.Labels["release"] != "v2" {
		t.Errorf("the user's own fields went with the wiring: %+v", d.Spec.Template.Spec.Containers[0].Env)
	}
	logf("byo: SessionCluster deleted; the user's Deployment unwired and ready after %.1f s", f.UnwiredSeconds)
}

// verifyByo reads every session back and returns how many were lost.
func (e *env) verifyByo(t *testing.T, url, when string) int {
	t.Helper()
	out, err := e.sessionload(context.Background(), nsByo, "verify", "-urls", url, "-in", "/work/s.json", "-retries", "5", "-concurrency", "8")
	var v verifySummary
	if jerr := json.Unmarshal(bytes.TrimSpace([]byte(lastLine(out))), &v); jerr != nil {
		t.Fatalf("verify %s: %v (%v)", when, jerr, err)
	}
	logf("byo: verify %s: %d checked, %d ok, %d lost, %d unverified", when, v.Checked, v.OK, v.Lost, v.Unverified)
	if v.Lost > 0 || v.Unverified > 0 || v.Checked != byoSessions {
		t.Errorf("verify %s: %+v", when, v)
	}
	return v.Lost
}

// wireForUninstall wires the user's Deployment again (the byo step ends by unwiring it), so
// that helm uninstall meets a SessionCluster holding the unwire finalizer. It reports whether
// the Deployment is wired; without one (the byo step failed early) there is nothing to wire.
func (e *env) wireForUninstall(t *testing.T) bool {
	t.Helper()
	ctx := context.Background()
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsByo, Name: byoWorkload}, &appsv1.Deployment{}); err != nil {
		logf("uninstall: no user's Deployment in %s (%v); uninstalling without a wired workload", nsByo, err)
		return false
	}
	if err := e.c.Create(ctx, loadSample(t, "session_v1alpha1_sessioncluster_workloadref.yaml", nsByo)); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("applying the workloadRef sample again: %v", err)
	}
	e.waitUserDeployment(t, "wired again before the uninstall", func(d *appsv1.Deployment) bool {
		return d.Labels[render.LabelWiredTo] == byoSC
	})
	return true
}

// checkUnwiredAfterUninstall checks the user's Deployment outlived the operator, unwired.
func (e *env) checkUnwiredAfterUninstall(t *testing.T) bool {
	t.Helper()
	d := e.waitUserDeployment(t, "unwired by the uninstall", func(d *appsv1.Deployment) bool {
		_, wired := d.Labels[render.LabelWiredTo]
		return !wired
	})
	for _, ev := range d.Spec.Template.Spec.Containers[0].Env {
		if strings.HasPrefix(ev.Name, "SESSION_REDIS") || strings.HasPrefix(ev.Name, "REDIS_") {
			t.Errorf("wiring left on the user's Deployment after helm uninstall: %s", ev.Name)
			return false
		}
	}
	logf("uninstall: the user's Deployment %s/%s was unwired before the manager went, and keeps running", nsByo, byoWorkload)
	return true
}
