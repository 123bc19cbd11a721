package store

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Static is an Observer that answers what it was told, for environments with no pods to
// ask (envtest, the scale benchmark). An unknown store has no primary.
type Static struct {
	mu   sync.Mutex
	obs  map[types.NamespacedName]Observation
	errs map[types.NamespacedName]error
	// Calls counts questions asked.
	calls int
}

// NewStatic returns an empty Static observer.
func NewStatic() *Static {
	return &Static{obs: map[types.NamespacedName]Observation{}, errs: map[types.NamespacedName]error{}}
}

// Set makes Observe report o for the store of cluster.
func (s *Static) Set(cluster types.NamespacedName, o Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs[cluster] = o
	delete(s.errs, cluster)
}

// Fail makes Observe return err for the store of cluster.
func (s *Static) Fail(cluster types.NamespacedName, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[cluster] = err
}

// Calls is how many times Observe was called.
func (s *Static) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Observe implements Observer.
func (s *Static) Observe(_ context.Context, t Target) (Observation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if err, ok := s.errs[t.Cluster]; ok {
		return Observation{Keys: -1}, err
	}
	o, ok := s.obs[t.Cluster]
	if !ok {
		return Observation{Keys: -1, SentinelsReachable: len(t.Sentinels)}, nil
	}
	return o, nil
}
