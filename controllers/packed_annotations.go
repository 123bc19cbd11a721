package controllers

import (
	"context"
	"encoding/binary"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cached children keep their annotations (and their pod templates') packed in one
// string, not a map.
//
// Every child carries a spec hash, and many a digest or two, whose values differ per
// object, so each cached object had a map of its own. A Go map of up to eight entries
// costs 336 bytes whatever it holds. Packed, the same pairs cost their bytes: at ten
// thousand SessionClusters the live heap went from 297 to 263 MiB.
//
// The packed form lives in metadata.selfLink, which the API server has not set since
// Kubernetes 1.20 and nothing in the operator reads. Reads through the cache (NewCache)
// unpack it into a fresh map, so the reconciler, and any write it makes from what it
// read, see the object as the API server sent it. Event handlers see the packed form;
// they map children by owner and labels only.

// packedPrefix marks a packed selfLink; a real one starts with "/".
const packedPrefix = "\x00packed\x00"

// annotationPrefix is the operator's own prefix, which nearly every key shares.
const annotationPrefix = "session.sessionops.dev/"

// packAnnotations moves an object's annotations into its selfLink: for each pair, a
// byte saying whether the key has the operator's prefix (left out), then the key and the
// value, each after its length. An object without annotations gets the bare prefix, so
// that every object the transform has seen says so (see packed).
func packAnnotations(o metav1.Object) {
	if packed(o) {
		return
	}
	ann := o.GetAnnotations()
	n := len(packedPrefix)
	for k, v := range ann {
		n += 1 + 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, packedPrefix...)
	for k, v := range ann {
		if rest, ok := strings.CutPrefix(k, annotationPrefix); ok {
			b = append(b, 1)
			k = rest
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	o.SetSelfLink(string(b))
	o.SetAnnotations(nil)
}

// packed reports whether the cache transform has already seen o. Transforms must be
// idempotent: client-go runs them twice on what a streamed initial list (WatchList)
// returns, once into its temporary store and again on the informer's Replace.
func packed(o metav1.Object) bool {
	return strings.HasPrefix(o.GetSelfLink(), packedPrefix)
}

// unpack restores what the cache transform packed: the object's annotations, and a
// workload's templates'.
func unpack(o metav1.Object) {
	unpackAnnotations(o)
	switch w := o.(type) {
	case *appsv1.StatefulSet:
		unpackAnnotations(&w.Spec.Template.ObjectMeta)
		for i := range w.Spec.VolumeClaimTemplates {
			unpackAnnotations(&w.Spec.VolumeClaimTemplates[i].ObjectMeta)
		}
	case *appsv1.Deployment:
		unpackAnnotations(&w.Spec.Template.ObjectMeta)
	}
}

// unpackAnnotations restores what packAnnotations moved; other objects are left as they are.
func unpackAnnotations(o metav1.Object) {
	rest, ok := strings.CutPrefix(o.GetSelfLink(), packedPrefix)
	if !ok {
		return
	}
	o.SetSelfLink("")
	if rest == "" {
		return
	}
	ann := map[string]string{}
	for rest != "" {
		operators := rest[0] == 1
		var k, v string
		k, rest = cutLength(rest[1:])
		v, rest = cutLength(rest)
		if operators {
			k = annotationPrefix + k
		}
		ann[k] = v
	}
	o.SetAnnotations(ann)
}

// cutLength reads a string written after its length.
func cutLength(s string) (string, string) {
	n, w := binary.Uvarint([]byte(s[:min(len(s), binary.MaxVarintLen64)]))
	if w <= 0 || uint64(len(s)-w) < n {
		return "", "" // cannot happen: only packAnnotations writes the prefix
	}
	return s[w : w+int(n)], s[w+int(n):]
}

// NewCache is the manager's cache: controller-runtime's, whose reads unpack annotations.
func NewCache(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	return unpackingCache{c}, nil
}

// unpackingCache unpacks the annotations of what it reads. The cache hands out copies,
// so the cached objects stay packed.
type unpackingCache struct {
	cache.Cache
}

func (c unpackingCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.Cache.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	unpack(obj)
	return nil
}

func (c unpackingCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Cache.List(ctx, list, opts...); err != nil {
		return err
	}
	return meta.EachListItem(list, func(item runtime.Object) error {
		if o, ok := item.(metav1.Object); ok {
			unpack(o)
		}
		return nil
	})
}
