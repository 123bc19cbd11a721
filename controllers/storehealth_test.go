package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/store"
)

// TestReadyFollowsTheSentinelsHealth: pods that still report ready do not make a store
// ready when its Sentinels see the primary down, disagree on it, or see a second server
// reporting role master; each wakes a reconcile through the Waker (a Sentinel event), and
// Ready returns when they agree again.
func TestReadyFollowsTheSentinelsHealth(t *testing.T) {
	ns := readyStoreCluster(t)
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	host := func(i int) string {
		return fmt.Sprintf("shop-store-%d.shop-store-headless.%s.svc.cluster.local", i, ns)
	}
	healthy := store.Observation{PrimaryHost: host(0), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}}

	for _, tc := range []struct {
		health store.Health
		reason string
		says   string
	}{
		{store.Health{Agreeing: 3, PrimaryDown: "subjectively down (s_down) (3 of 3 Sentinels)"}, sessionv1.ReasonNoPrimary, "cannot take writes: subjectively down"},
		{store.Health{Agreeing: 2}, sessionv1.ReasonSentinelsDisagree, "2 of 3 Sentinels"},
		{store.Health{Agreeing: 3, OtherPrimaries: []string{host(2)}}, sessionv1.ReasonMultiplePrimaries, "shop-store-2 reports role master"},
	} {
		o := healthy
		o.Health = tc.health
		observer.Set(key, o)
		waker.Wake(key)
		sc := waitCondition(t, ns, "shop", sessionv1.ConditionStoreReady, metav1.ConditionFalse, tc.reason)
		c, _ := condition(t, ns, "shop", sessionv1.ConditionReady)
		if c.Status != metav1.ConditionFalse || c.Reason != tc.reason || !strings.Contains(c.Message, tc.says) {
			t.Errorf("Ready with %+v: %+v", tc.health, c)
		}
		if sc.Status.Store.ReadyReplicas != 3 || sc.Status.Store.Primary != "shop-store-0" {
			t.Errorf("store status %+v", sc.Status.Store)
		}
		observer.Set(key, healthy)
		waker.Wake(key)
		waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionTrue, sessionv1.ReasonReady)
	}

	// No Sentinel names a primary (every server gone, Sentinels restarted).
	observer.Set(key, store.Observation{SentinelsReachable: 3, Keys: -1})
	waker.Wake(key)
	waitCondition(t, ns, "shop", sessionv1.ConditionReady, metav1.ConditionFalse, sessionv1.ReasonNoPrimary)
}

// TestFailoverWhileOperatorDownIsRecorded: an operator that starts again has no memory of
// the Sentinels' announcements; its observer just names another primary than the one in
// status. That is a failover: lastFailover (with no duration: its start was not seen), one
// Failover event and one count in the metric, not repeated by later passes.
func TestFailoverWhileOperatorDownIsRecorded(t *testing.T) {
	ns := readyStoreCluster(t)
	key := types.NamespacedName{Namespace: ns, Name: "shop"}
	host := func(i int) string {
		return fmt.Sprintf("shop-store-%d.shop-store-headless.%s.svc.cluster.local", i, ns)
	}
	failovers := metricValue(t, "session_operator_failovers_total", map[string]string{"namespace": ns})

	observer.Set(key, store.Observation{PrimaryHost: host(1), SentinelsReachable: 3, Health: store.Health{Agreeing: 3}, Keys: 0})
	poke(t, ns, "shop")
	var sc *sessionv1.SessionCluster
	eventually(t, 20*time.Second, func() error {
		_, sc = condition(t, ns, "shop", sessionv1.ConditionReady)
		f := sc.Status.Store.LastFailover
		if sc.Status.Store.Primary != "shop-store-1" || f == nil || f.From != "shop-store-0" || f.To != "shop-store-1" {
			return fmt.Errorf("store status %+v", sc.Status.Store)
		}
		return nil
	})
	if d := sc.Status.Store.LastFailover.Duration; d != nil {
		t.Errorf("a failover whose start nobody saw has a duration: %v", d)
	}
	for i := range 3 {
		pokeAndWait(t, ns, 100+i)
	}
	if got := metricValue(t, "session_operator_failovers_total", map[string]string{"namespace": ns}); got != failovers+1 {
		t.Errorf("failovers metric %v, want %v", got, failovers+1)
	}
	eventually(t, 10*time.Second, func() error {
		list := &eventsv1.EventList{}
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return err
		}
		n := 0
		for _, ev := range list.Items {
			if ev.Reason == sessionv1.EventFailover {
				n++
				if !strings.Contains(ev.Note, "shop-store-0 to shop-store-1") {
					t.Errorf("event %q", ev.Note)
				}
			}
		}
		if n != 1 {
			return fmt.Errorf("%d Failover events, want 1", n)
		}
		return nil
	})
}
