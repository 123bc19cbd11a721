package apply

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
)

// claimResourceVersion is a resourceVersion no stored object has: etcd numbers its
// first write 2. A server-side apply carrying it is a create while the name is free (the
// apiserver ignores a resourceVersion when an apply creates) and a conflict while any
// object holds the name, so the operator's write can never land on a stranger's object.
const claimResourceVersion = "1"

// Claimed is a child a Claim created: enough to take it back.
type Claimed struct {
	Object client.Object
	UID    types.UID
}

// Claim creates desired if, and only if, no object of its name exists, in one request:
// the check that no stranger holds the name and the write, for a child the cache does not
// hold. It returns the created object, or nil when it could not claim the name (taken,
// most likely: Check then says by whom).
func (a *Applier) Claim(ctx context.Context, desired client.Object) (*Claimed, error) {
	stamp(desired)
	u, err := toApplyConfiguration(a.Client, desired)
	if err != nil {
		return nil, err
	}
	u.SetResourceVersion(claimResourceVersion)
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return nil, nil
		}
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			// An apiserver that refused the resourceVersion on a create: Check reads the
			// name and the apply that follows says what was wrong, if anything.
			return nil, nil
		}
		return nil, err
	}
	a.recordWritten(desired, u)
	return &Claimed{Object: desired, UID: u.GetUID()}, nil
}

// Unclaim deletes what Claim created, unless it has since been replaced.
func (a *Applier) Unclaim(ctx context.Context, c *Claimed) error {
	err := a.Client.Delete(ctx, c.Object, client.Preconditions{UID: &c.UID}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("taking back %s %s: %w", kindOf(a.Client, c.Object), c.Object.GetName(), err)
	}
	return nil
}

// Cached is Check from the cache alone: known is false when the cache holds no object of
// that name, which proves nothing (the cache sees only the operator's labelled objects).
func (a *Applier) Cached(ctx context.Context, owner metav1.Object, desired client.Object) (current client.Object, known bool, err error) {
	obj, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return nil, false, fmt.Errorf("%T is not a client.Object", desired)
	}
	err = a.Client.Get(ctx, client.ObjectKeyFromObject(desired), obj)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := a.owned(owner, desired, obj); err != nil {
		return nil, true, err
	}
	return obj, true, nil
}

// Intent is the spec hash Apply stamps on desired: two objects of equal intent write the
// same thing.
func Intent(desired client.Object) string {
	c, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return ""
	}
	stamp(c)
	return c.GetAnnotations()[render.AnnotationSpecHash]
}
