// Package apply writes a SessionCluster's children with one strategy: server-side apply
// under a single field owner, and only when the stored object differs from what the
// operator wants. A reconcile that changes nothing therefore writes nothing, and an object
// of the same name that belongs to someone else is never touched.
package apply

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/sessionops/session-operator/internal/render"
)

// FieldOwner is the field manager of every write the operator makes.
const FieldOwner = "session-operator"

// Outcome says what Apply did.
type Outcome string

const (
	Unchanged Outcome = "unchanged"
	Created   Outcome = "created"
	Updated   Outcome = "updated"
)

// ConflictError reports an object that exists under the wanted name but is not controlled
// by the SessionCluster.
type ConflictError struct {
	Kind, Name, Owner string
}

func (e *ConflictError) Error() string {
	owner := "no controller"
	if e.Owner != "" {
		owner = "controller " + e.Owner
	}
	return fmt.Sprintf("%s %s already exists and belongs to %s", e.Kind, e.Name, owner)
}

// IsConflict reports whether err is (or wraps) a ConflictError.
func IsConflict(err error) bool {
	var c *ConflictError
	return errors.As(err, &c)
}

// Applier writes children. Cached reads come from Client; Live is an uncached reader
// consulted only when the cache has no object of that name, because the cache sees only
// objects carrying the operator's labels and a stranger's object would be invisible to it.
type Applier struct {
	Client client.Client
	Live   client.Reader
	// Verified records the slimmed workloads known to be up to date (see SlimWorkload);
	// nil reads every slimmed workload whole.
	Verified *Verified
}

// Check returns a ConflictError when an object named like desired exists and is not
// controlled by owner. It reads the cache, then the apiserver when the cache has nothing.
func (a *Applier) Check(ctx context.Context, owner metav1.Object, desired client.Object) (client.Object, error) {
	current, err := a.current(ctx, desired)
	if err != nil || current == nil {
		return nil, err
	}
	if err := a.owned(owner, desired, current); err != nil {
		return nil, err
	}
	return current, nil
}

// owned returns a ConflictError unless current is controlled by owner.
func (a *Applier) owned(owner metav1.Object, desired, current client.Object) error {
	if metav1.IsControlledBy(current, owner) {
		return nil
	}
	ctrl := metav1.GetControllerOf(current)
	name := ""
	if ctrl != nil {
		name = ctrl.Kind + "/" + ctrl.Name
	}
	return &ConflictError{Kind: kindOf(a.Client, desired), Name: desired.GetName(), Owner: name}
}

// Apply makes the stored object match desired, checking ownership first.
func (a *Applier) Apply(ctx context.Context, owner metav1.Object, desired client.Object) (Outcome, error) {
	current, err := a.Check(ctx, owner, desired)
	if err != nil {
		return Unchanged, err
	}
	return a.ApplyOver(ctx, desired, current)
}

// ApplyOver makes the stored object match desired, given current as Check returned it
// (nil when there is none). Callers that check every child before writing any use it.
func (a *Applier) ApplyOver(ctx context.Context, desired, current client.Object) (Outcome, error) {
	stamp(desired)
	if current != nil {
		ok, err := a.upToDate(ctx, desired, current)
		if err != nil {
			return Unchanged, err
		}
		if ok {
			return Unchanged, nil
		}
	}
	u, err := toApplyConfiguration(a.Client, desired)
	if err != nil {
		return Unchanged, err
	}
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return Unchanged, err
	}
	a.recordWritten(desired, u)
	if current == nil {
		return Created, nil
	}
	return Updated, nil
}

// upToDate is UpToDate, reading a slimmed workload whole when the cached one cannot say.
func (a *Applier) upToDate(ctx context.Context, desired, current client.Object) (bool, error) {
	digest, slim := current.GetAnnotations()[AnnotationSpecDigest]
	if !slim {
		return UpToDate(desired, current), nil
	}
	if desired.GetAnnotations()[render.AnnotationSpecHash] != current.GetAnnotations()[render.AnnotationSpecHash] {
		return false, nil
	}
	if a.Verified.has(current.GetUID(), digest) {
		return metadataUpToDate(desired, current), nil
	}
	full, ok := desired.DeepCopyObject().(client.Object)
	if !ok || a.Live == nil {
		return false, nil
	}
	if err := a.Live.Get(ctx, client.ObjectKeyFromObject(current), full); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading %s %s: %w", kindOf(a.Client, desired), desired.GetName(), err)
	}
	if !UpToDate(desired, full) {
		return false, nil
	}
	a.Verified.put(full.GetUID(), specDigestOf(full))
	return true, nil
}

// recordWritten remembers a written workload as verified, from the apply's reply (the
// object as stored).
func (a *Applier) recordWritten(desired client.Object, reply *unstructured.Unstructured) {
	if a.Verified == nil || reply == nil || reply.GetUID() == "" {
		return
	}
	stored, ok := desired.DeepCopyObject().(client.Object)
	if !ok || specDigestOf(stored) == "" {
		return
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(reply.Object, stored); err != nil {
		return
	}
	a.Verified.put(stored.GetUID(), specDigestOf(stored))
}

// current is the stored object named like desired, or nil.
func (a *Applier) current(ctx context.Context, desired client.Object) (client.Object, error) {
	obj, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return nil, fmt.Errorf("%T is not a client.Object", desired)
	}
	key := client.ObjectKeyFromObject(desired)
	err := a.Client.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && a.Live != nil {
		err = a.Live.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// stamp records on desired a hash of itself. Comparing hashes catches what the semantic
// comparison cannot: something the operator used to set and no longer does.
func stamp(desired client.Object) {
	ann := desired.GetAnnotations()
	delete(ann, render.AnnotationSpecHash)
	hash := render.Hash(desired)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[render.AnnotationSpecHash] = hash
	desired.SetAnnotations(ann)
}

// UpToDate reports whether current already carries everything desired says. Fields the
// operator leaves empty are the apiserver's or other controllers' to fill, so they are
// not compared; a spec-hash mismatch means the operator's own intent changed.
func UpToDate(desired, current client.Object) bool {
	if !metadataUpToDate(desired, current) {
		return false
	}
	want, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return false
	}
	if match, digested := digestedMatches(desired, current); digested {
		if !match {
			return false
		}
		delete(want, "data")
		delete(want, "binaryData")
	}
	have, err := runtime.DefaultUnstructuredConverter.ToUnstructured(current)
	if err != nil {
		return false
	}
	for _, field := range payloadFields {
		w, ok := want[field]
		if !ok {
			continue
		}
		if !derivative(w, have[field]) {
			return false
		}
	}
	return true
}

// metadataUpToDate compares the spec-hash, labels, annotations and owners.
func metadataUpToDate(desired, current client.Object) bool {
	if desired.GetAnnotations()[render.AnnotationSpecHash] != current.GetAnnotations()[render.AnnotationSpecHash] {
		return false
	}
	return equality.Semantic.DeepDerivative(desired.GetLabels(), current.GetLabels()) &&
		equality.Semantic.DeepDerivative(desired.GetAnnotations(), current.GetAnnotations()) &&
		equality.Semantic.DeepDerivative(desired.GetOwnerReferences(), current.GetOwnerReferences())
}

// payloadFields are the top-level fields that carry an object's content (as opposed to
// metadata and status) across the kinds the operator writes.
var payloadFields = []string{"spec", "data", "type", "rules", "roleRef", "subjects", "automountServiceAccountToken"}

// derivative is DeepDerivative on decoded JSON: every value desired sets must be present
// and equal in current; lists must match element by element and in length, because the
// operator owns the whole of every list it writes.
func derivative(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0
		}
		for k, v := range w {
			if !derivative(v, h[k]) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return len(w) == 0
		}
		if len(w) != len(h) {
			return false
		}
		for i := range w {
			if !derivative(w[i], h[i]) {
				return false
			}
		}
		return true
	case string:
		if w == "" {
			return true
		}
		if hs, ok := have.(string); ok && hs == w {
			return true
		}
		return quantityEqual(w, have)
	case nil:
		return true
	default:
		return equality.Semantic.DeepEqual(normalizeNumber(want), normalizeNumber(have))
	}
}

// toApplyConfiguration encodes desired as an apply request: typed zero values that mean
// "unset" (status, creation timestamps) are dropped so the operator claims no field it
// does not mean to own.
func toApplyConfiguration(c client.Client, desired client.Object) (*unstructured.Unstructured, error) {
	gvk, err := apiutil.GVKForObject(desired, c.Scheme())
	if err != nil {
		return nil, fmt.Errorf("finding kind of %T: %w", desired, err)
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: raw}
	u.SetGroupVersionKind(gvk)
	delete(u.Object, "status")
	prune(u.Object)
	return u, nil
}

// prune drops nil values and the empty maps they leave behind.
func prune(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			prune(t)
			if len(t) == 0 && k == "metadata" {
				delete(m, k)
			}
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

func kindOf(c client.Client, obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return gvk.Kind
}
