package controllers

import (
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// interner shares one copy of each string the cached objects repeat: every child of a
// SessionCluster carries the same label keys and values, annotation keys and owner
// reference, and the decoder makes a copy of each for every object. At ten thousand
// SessionClusters (over a hundred thousand cached objects) the copies add up to tens of
// megabytes.
//
// Whole label maps are shared too: the children of one SessionCluster with the same
// component carry the same labels, and a Service's selector is a subset of them. A small
// map costs a few hundred bytes, more than the strings it holds. Cached objects are never
// written to (the cache hands out copies), so one map can serve many objects.
type interner struct {
	mu   sync.Mutex
	m    map[string]string
	maps map[uint64][]map[string]string // by a hash of the map's pairs
	refs map[string][]metav1.OwnerReference
}

// maxInterned bounds the table: past it, it starts again (names of SessionClusters long
// deleted would otherwise stay for ever). Strings already shared stay shared.
const maxInterned = 1 << 18

var shared = &interner{m: map[string]string{}, maps: map[uint64][]map[string]string{}, refs: map[string][]metav1.OwnerReference{}}

func (in *interner) get(s string) string {
	if s == "" {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.getLocked(s)
}

func (in *interner) getLocked(s string) string {
	if c, ok := in.m[s]; ok {
		return c
	}
	if len(in.m) >= maxInterned {
		in.m = map[string]string{}
	}
	in.m[s] = s
	return s
}

// labels returns the shared map equal to m. The table is keyed by a hash of the map's
// sorted pairs, so that it holds no second copy of them.
func (in *interner) labels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var h maphash.Hash
	h.SetSeed(mapSeed)
	for _, k := range keys {
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(m[k])
		h.WriteByte(0)
	}
	sum := h.Sum64()
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.maps[sum] {
		if maps.Equal(c, m) {
			return c
		}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[in.getLocked(k)] = in.getLocked(v)
	}
	if len(in.maps) >= maxInterned/4 {
		in.maps = map[uint64][]map[string]string{}
	}
	in.maps[sum] = append(in.maps[sum], out)
	return out
}

var mapSeed = maphash.MakeSeed()

// internMeta is a cache transform: the object's repeated strings, shared, and its
// annotations packed (packed_annotations.go): their values (hashes, digests) differ per
// object.
func internMeta(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	in := shared
	o.SetNamespace(in.get(o.GetNamespace()))
	o.SetLabels(in.labels(o.GetLabels()))
	packAnnotations(o)
	o.SetOwnerReferences(in.owners(o.GetOwnerReferences()))
	switch t := obj.(type) {
	case *corev1.Service:
		t.Spec.Selector = in.labels(t.Spec.Selector)
	case *policyv1.PodDisruptionBudget:
		in.selector(t.Spec.Selector)
	case *appsv1.StatefulSet:
		in.selector(t.Spec.Selector)
		in.template(&t.Spec.Template.ObjectMeta)
		for i := range t.Spec.VolumeClaimTemplates {
			in.template(&t.Spec.VolumeClaimTemplates[i].ObjectMeta)
		}
	case *appsv1.Deployment:
		in.selector(t.Spec.Selector)
		in.template(&t.Spec.Template.ObjectMeta)
	case *networkingv1.NetworkPolicy:
		in.selector(&t.Spec.PodSelector)
		for i := range t.Spec.Ingress {
			for j := range t.Spec.Ingress[i].From {
				in.selector(t.Spec.Ingress[i].From[j].PodSelector)
				in.selector(t.Spec.Ingress[i].From[j].NamespaceSelector)
			}
		}
	}
	return obj, nil
}

// template shares a pod or claim template's labels, which repeat those of the workload,
// and packs its annotations.
func (in *interner) template(m *metav1.ObjectMeta) {
	m.Labels = in.labels(m.Labels)
	packAnnotations(m)
}

func (in *interner) selector(s *metav1.LabelSelector) {
	if s != nil {
		s.MatchLabels = in.labels(s.MatchLabels)
	}
}

// owners returns the shared slice equal to refs: every child of a SessionCluster has the
// same single owner reference.
func (in *interner) owners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if len(refs) != 1 {
		in.mu.Lock()
		defer in.mu.Unlock()
		for i := range refs {
			in.ownerLocked(&refs[i])
		}
		return refs
	}
	r := refs[0]
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%v\x00%v", r.APIVersion, r.Kind, r.Name, r.UID, flag(r.Controller), flag(r.BlockOwnerDeletion))
	in.mu.Lock()
	defer in.mu.Unlock()
	if out, ok := in.refs[key]; ok {
		return out
	}
	in.ownerLocked(&r)
	out := []metav1.OwnerReference{r}
	if len(in.refs) >= maxInterned/4 {
		in.refs = map[string][]metav1.OwnerReference{}
	}
	in.refs[key] = out
	return out
}

// ownerLocked shares the strings of one owner reference; in.mu is held.
func (in *interner) ownerLocked(r *metav1.OwnerReference) {
	r.APIVersion, r.Kind, r.Name = in.getLocked(r.APIVersion), in.getLocked(r.Kind), in.getLocked(r.Name)
	r.UID = types.UID(in.getLocked(string(r.UID)))
}

// flag tells a nil *bool from false.
func flag(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}
