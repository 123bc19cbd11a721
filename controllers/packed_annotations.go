package controllers

import (
	"context"
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
// costs about 336 bytes whatever it holds: at ten thousand SessionClusters, some 127,000
// maps, over 40 MiB of the manager's live heap for a few hashes. Packed, the same pairs
// cost their bytes.
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

// packAnnotations moves an object's annotations into its selfLink.
func packAnnotations(o metav1.Object) {
	ann := o.GetAnnotations()
	if len(ann) == 0 {
		return
	}
	n := len(packedPrefix)
	for k, v := range ann {
		// A key cannot hold NUL (it is a qualified name); a value could, in principle, and
		// leaves the map as it is.
		if strings.IndexByte(v, 0) >= 0 {
			return
		}
		n += len(k) + len(v) + 2
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(packedPrefix)
	for k, v := range ann {
		if rest, ok := strings.CutPrefix(k, annotationPrefix); ok {
			b.WriteByte(1)
			k = rest
		}
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(v)
		b.WriteByte(0)
	}
	o.SetSelfLink(b.String())
	o.SetAnnotations(nil)
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
	packed, ok := strings.CutPrefix(o.GetSelfLink(), packedPrefix)
	if !ok {
		return
	}
	ann := map[string]string{}
	for packed != "" {
		k, rest, _ := strings.Cut(packed, "\x00")
		v, rest, _ := strings.Cut(rest, "\x00")
		if short, ok := strings.CutPrefix(k, "\x01"); ok {
			k = annotationPrefix + short
		}
		ann[k] = v
		packed = rest
	}
	o.SetAnnotations(ann)
	o.SetSelfLink("")
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
