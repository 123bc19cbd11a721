package uninstall

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/manager"
	"github.com/sessionops/session-operator/internal/testenv"
)

var c client.Client

func TestMain(m *testing.M) {
	env, cfg, err := testenv.Start()
	if err != nil {
		panic(err)
	}
	if c, err = client.New(cfg, client.Options{Scheme: manager.Scheme}); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func sessionCluster(t *testing.T, ns, name string, wired bool) *sessionv1.SessionCluster {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	app := sessionv1.AppSpec{Name: "web", Image: "example/shop:1"}
	sc := &sessionv1.SessionCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: sessionv1.SessionClusterSpec{Mode: sessionv1.ModeStore, Apps: []sessionv1.AppSpec{app}, Store: &sessionv1.StoreSpec{}}}
	if wired {
		sc.Spec.Apps[0] = sessionv1.AppSpec{Name: "web", WorkloadRef: &sessionv1.WorkloadReference{Kind: sessionv1.WorkloadDeployment, Name: "my-shop"}}
		sc.Finalizers = []string{finalizerUnwire}
	}
	if err := c.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	return sc
}

func remaining(t *testing.T) []string {
	t.Helper()
	var l sessionv1.SessionClusterList
	if err := c.List(context.Background(), &l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sc := range l.Items {
		names = append(names, sc.Namespace+"/"+sc.Name)
	}
	return names
}

// A manager that finalizes in time: every SessionCluster goes, the finalizer is the
// manager's to remove, and Run returns as soon as none is left.
func TestRunWaitsForTheManager(t *testing.T) {
	ctx := context.Background()
	sessionCluster(t, "un-a", "plain", false)
	wired := sessionCluster(t, "un-b", "wired", true)
	removedBy := make(chan string, 1)
	go func() { // the manager: unwire once deleted, then drop the finalizer
		for {
			sc := &sessionv1.SessionCluster{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(wired), sc); err == nil && sc.DeletionTimestamp != nil {
				time.Sleep(300 * time.Millisecond)
				base := sc.DeepCopy()
				sc.Finalizers = nil
				_ = c.Patch(ctx, sc, client.MergeFrom(base))
				removedBy <- "manager"
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	if err := Run(ctx, c, Options{Timeout: 30 * time.Second, Poll: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run took %s after the manager had finalized", took)
	}
	if left := remaining(t); len(left) != 0 {
		t.Errorf("left after Run: %v", left)
	}
	if by := <-removedBy; by != "manager" {
		t.Errorf("finalizer removed by %s", by)
	}
}

// No manager: after the timeout the finalizer is removed so that the uninstall finishes.
// Namespaces out of scope are left alone.
func TestRunReleasesAfterTimeout(t *testing.T) {
	ctx := context.Background()
	sessionCluster(t, "un-c", "wired", true)
	sessionCluster(t, "un-d", "elsewhere", false)
	start := time.Now()
	if err := Run(ctx, c, Options{Namespaces: []string{"un-c"}, Timeout: 2 * time.Second, Poll: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("Run returned after %s, before its 2 s timeout, with the finalizer still set", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for slices.Contains(remaining(t), "un-c/wired") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := remaining(t); !slices.Equal(left, []string{"un-d/elsewhere"}) {
		t.Errorf("left after Run in un-c only: %v, want only un-d/elsewhere", left)
	}
	var events corev1.EventList
	if err := c.List(ctx, &events, client.InNamespace("un-c")); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
		return e.Reason == "WiringLeft" && e.InvolvedObject.Name == "my-shop" && e.InvolvedObject.Kind == "Deployment"
	}) {
		t.Errorf("no WiringLeft event on Deployment my-shop: %v", events.Items)
	}
}
