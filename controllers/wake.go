package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Waker turns news from outside the cluster (a Sentinel's +switch-master, a changed
// Observation) into reconciles. It is the controller's source: Wake adds the
// SessionCluster to the work queue, which holds each key once however often it is woken,
// so a burst of thousands of first observations loses none and costs one reconcile each.
type Waker struct {
	mu      sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
	pending map[types.NamespacedName]struct{} // woken before the controller started
}

// NewWaker returns a Waker.
func NewWaker() *Waker {
	return &Waker{pending: map[types.NamespacedName]struct{}{}}
}

// Wake asks for a reconcile of the SessionCluster. It never blocks.
func (w *Waker) Wake(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queue == nil {
		w.pending[key] = struct{}{}
		return
	}
	w.queue.Add(reconcile.Request{NamespacedName: key})
}

// Start implements source.Source: from now on wake-ups go to the controller's queue.
func (w *Waker) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = q
	for key := range w.pending {
		q.Add(reconcile.Request{NamespacedName: key})
	}
	w.pending = nil
	return nil
}

func (w *Waker) String() string { return "sentinel-waker" }

// forgetter is implemented by observers that hold per-store state.
type forgetter interface {
	Forget(types.NamespacedName)
}
