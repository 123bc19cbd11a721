package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Waker turns announcements from outside the cluster (a Sentinel's +switch-master) into
// reconciles, so a failover shows in status at once rather than at the next periodic check.
type Waker struct {
	ch chan event.GenericEvent
}

// NewWaker returns a Waker holding up to buffer pending wake-ups; past that they are
// dropped, and the periodic check catches up.
func NewWaker(buffer int) *Waker {
	return &Waker{ch: make(chan event.GenericEvent, buffer)}
}

// Wake asks for a reconcile of the SessionCluster. It never blocks.
func (w *Waker) Wake(key types.NamespacedName) {
	obj := &sessionv1.SessionCluster{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case w.ch <- event.GenericEvent{Object: client.Object(obj)}:
	default:
	}
}

// forgetter is implemented by observers that hold per-store state.
type forgetter interface {
	Forget(types.NamespacedName)
}
