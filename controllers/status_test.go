package controllers

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/store"
)

// TestEarlyFailureKeepsTheObservedStore: a pass whose inputs cannot be read (here the
// user's password Secret is gone) writes nothing, but still observes, so status keeps the
// primary, the ready counts and the store's condition instead of "being created".
func TestEarlyFailureKeepsTheObservedStore(t *testing.T) {
	ns := readyStoreCluster(t)

	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) {
		s.Store.Auth = sessionv1.StoreAuth{ExistingSecret: "gone", ExistingSecretKey: "pw"}
	})
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonAuthSecretInvalid)
	if s := sc.Status.Store; s == nil || s.Primary != "shop-store-0" || s.ReadyReplicas != 3 || s.SentinelsReady != 3 {
		t.Errorf("store status after a failed early step: %+v", s)
	}
	c, _ := condition(t, ns, "shop", sessionv1.ConditionStoreReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("StoreReady after a failed early step: %+v", c)
	}
	if len(sc.Status.Apps) != 1 || sc.Status.Apps[0].ReadyReplicas != 2 || sc.Status.Apps[0].UpdatedReplicas != 2 {
		t.Errorf("apps status after a failed early step: %+v", sc.Status.Apps)
	}
}

// TestStalledAppRolloutIsNotReady: old pods that still answer do not make a rollout that
// passed its progress deadline look ready.
func TestStalledAppRolloutIsNotReady(t *testing.T) {
	ns := readyStoreCluster(t)

	dep := &appsv1.Deployment{}
	if err := get(t, ns, "shop-web", dep); err != nil {
		t.Fatal(err)
	}
	dep.Status.UpdatedReplicas = 1
	dep.Status.Conditions = []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	if err := k8s.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionAppsReady, metav1.ConditionFalse, sessionv1.ReasonAppRolloutStalled)
	if c, _ := condition(t, ns, "shop", sessionv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != sessionv1.ReasonAppRolloutStalled {
		t.Errorf("Ready with a stalled rollout: %+v", c)
	}
	if sc.Status.Apps[0].UpdatedReplicas != 1 {
		t.Errorf("apps status %+v", sc.Status.Apps)
	}
}

// readyStoreCluster makes a Store-mode "shop" in a new namespace whose store and apps
// report ready, and returns the namespace.
func readyStoreCluster(t *testing.T) string {
	t.Helper()
	ns := namespace(t)
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	observer.Set(key, store.Observation{PrimaryHost: fmt.Sprintf("shop-store-0.shop-store-headless.%s.svc.cluster.local", ns), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}})
	create(t, storeCluster(ns))
	waitChildren(t, ns, storeChildren())
	runPods(t, ns)
	waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)
	return ns
}
