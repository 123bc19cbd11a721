package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// BenchmarkCreateToChildren measures, over 50 Store-mode SessionClusters created at
// once, the time from each create to its last child (the app Deployment, applied last)
// appearing, and reports p50 and p99.
func BenchmarkCreateToChildren(b *testing.B) {
	const n = 50
	for range b.N {
		ns := benchNamespace(b)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		w, err := k8s.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		created := map[string]time.Time{}
		done := map[string]time.Duration{}
		go func() {
			for ev := range w.ResultChan() {
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok || ev.Type != watch.Added {
					continue
				}
				at := time.Now()
				mu.Lock()
				sc := d.Labels["app.kubernetes.io/instance"]
				if start, ok := created[sc]; ok {
					done[sc] = at.Sub(start)
				}
				mu.Unlock()
			}
		}()
		for i := range n {
			sc := storeCluster(ns)
			sc.Name = fmt.Sprintf("shop%d", i)
			mu.Lock()
			created[sc.Name] = time.Now()
			mu.Unlock()
			if err := k8s.Create(ctx, sc); err != nil {
				b.Fatal(err)
			}
		}
		for {
			mu.Lock()
			got := len(done)
			mu.Unlock()
			if got == n {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("only %d of %d SessionClusters got their children", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		w.Stop()
		cancel()
		var lat []time.Duration
		for _, d := range done {
			lat = append(lat, d)
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
		b.ReportMetric(p50.Seconds(), "p50-s")
		b.ReportMetric(p99.Seconds(), "p99-s")
		b.Logf("create to all children over %d SessionClusters: p50 %s, p99 %s", n, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	}
}

// BenchmarkNoOpReconcileWrites reports the write requests one reconcile makes when
// nothing changed (the target is 0).
func BenchmarkNoOpReconcileWrites(b *testing.B) {
	ns := benchNamespace(b)
	sc := storeCluster(ns)
	if err := k8s.Create(context.Background(), sc); err != nil {
		b.Fatal(err)
	}
	waitQuiet(b, ns)
	b.ResetTimer()
	writes, before := managerWrites.Writes(), reconcileCount()
	for i := range b.N {
		patch := client.MergeFrom(sc.DeepCopy())
		metav1.SetMetaDataAnnotation(&sc.ObjectMeta, "bench/poke", fmt.Sprint(i))
		if err := k8s.Patch(context.Background(), sc, patch); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for reconcileCount() < before+float64(i+1) {
			if time.Now().After(deadline) {
				b.Fatal("no reconcile")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	per := float64(managerWrites.Writes()-writes) / float64(b.N)
	b.ReportMetric(per, "writes/reconcile")
	b.Logf("write requests per no-op reconcile: %.2f over %d reconciles", per, b.N)
}

func benchNamespace(b *testing.B) string {
	name := fmt.Sprintf("bench%d", nsCounter.Add(1))
	if err := k8s.Create(context.Background(), namespaceObject(name)); err != nil {
		b.Fatal(err)
	}
	return name
}

// waitQuiet waits until the SessionCluster's status is written and the manager has been
// silent for a second.
func waitQuiet(b *testing.B, ns string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		sc := &sessionv1.SessionCluster{}
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shop"}, sc)
		if err == nil && sc.Status.ObservedGeneration == sc.Generation {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal(errors.Join(err, errors.New("status never written")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	last, quiet := managerWrites.Writes(), time.Now()
	for time.Since(quiet) < time.Second {
		time.Sleep(50 * time.Millisecond)
		if w := managerWrites.Writes(); w != last {
			last, quiet = w, time.Now()
		}
	}
}
