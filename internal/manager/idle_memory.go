package manager

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	idleMemoryReturns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "session_operator_idle_memory_returns_total",
		Help: "Times the quiet manager collected and returned its free memory to the system (--return-idle-memory).",
	})
	idleMemoryReturned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "session_operator_idle_memory_returned_bytes_total",
		Help: "Heap above the live heap (free, or dead and not yet collected) when the quiet manager collected and returned its free memory (--return-idle-memory).",
	})
)

func init() { ctrlmetrics.Registry.MustRegister(idleMemoryReturns, idleMemoryReturned) }

// IdleMemory gives back to the system the memory the Go runtime keeps after a burst, once
// the manager has gone quiet. A burst (a fleet of SessionClusters created, a restart's
// first pass over all of them) grows the heap to GOGC's headroom above the live heap, and
// the runtime then keeps free pages up to 1.1 times the next collection's goal: at ten
// thousand SessionClusters, about 150 MiB that an idle manager holds for a burst that may
// not come again. Like the JVM's collection when idle (JEP 346), once the manager has
// allocated little for a while and enough of its heap is above the live heap, it collects
// and returns the free pages. A busy manager is left alone, and a return happens at most
// once per MinGap: for a 300 MiB heap, an extra collection a minute is about 1% of a core.
type IdleMemory struct {
	// Interval is how often the runtime's counters are read.
	Interval time.Duration
	// Quiet is how long the allocation rate must stay below MaxAllocRate.
	Quiet time.Duration
	// MaxAllocRate is the bytes per second allocated that still count as quiet, with at
	// least a 32nd of the live heap per second allowed: a large cache is revisited now and
	// then (a store's periodic question, an informer's bookmark).
	MaxAllocRate uint64
	// MinFree is the heap above the live heap (free and not yet returned, or dead and not
	// yet collected) worth a collection, with at least an eighth of the live heap required.
	// What bounds the cost is MinGap, not this: a quiet manager's garbage grows by the
	// minute, and past an eighth of the live heap it is worth the collection.
	MinFree uint64
	// MinGap is the least time between two returns.
	MinGap time.Duration

	onFree func(before memSample) // tests
}

// NewIdleMemory returns the manager's defaults.
func NewIdleMemory() *IdleMemory {
	return &IdleMemory{Interval: time.Second, Quiet: 3 * time.Second, MaxAllocRate: 1 << 20, MinFree: 32 << 20, MinGap: time.Minute}
}

// memSample is what the runtime says of its heap at one moment.
type memSample struct {
	at        time.Time
	allocated uint64 // cumulative bytes allocated
	free      uint64 // free heap not yet returned to the system
	objects   uint64 // heap holding objects, dead ones not yet collected among them
	live      uint64 // live heap at the last collection
}

// reclaimable is what a collection and a return would give back.
func (s memSample) reclaimable() uint64 {
	return s.free + s.objects - min(s.objects, s.live)
}

var memMetrics = []string{"/gc/heap/allocs:bytes", "/memory/classes/heap/free:bytes", "/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes"}

func readMemSample() memSample {
	s := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	value := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return memSample{at: time.Now(), allocated: value(0), free: value(1), objects: value(2), live: value(3)}
}

// shouldReturn decides from the samples of the last Quiet (oldest first) and the time of
// the last return.
func (m *IdleMemory) shouldReturn(window []memSample, last time.Time) bool {
	if len(window) < 2 {
		return false
	}
	first, now := window[0], window[len(window)-1]
	span := now.at.Sub(first.at)
	if span < m.Quiet || (!last.IsZero() && now.at.Sub(last) < m.MinGap) {
		return false
	}
	rate := float64(now.allocated-first.allocated) / span.Seconds()
	return rate <= float64(max(m.MaxAllocRate, now.live/32)) && now.reclaimable() >= max(m.MinFree, now.live/8)
}

// Start samples the runtime every Interval until ctx ends.
func (m *IdleMemory) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("idle-memory")
	tick := time.NewTicker(m.Interval)
	defer tick.Stop()
	var window []memSample
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		s := readMemSample()
		window = append(window, s)
		// Keep the newest samples that span Quiet, and one older: the window's start.
		for len(window) > 2 && s.at.Sub(window[1].at) >= m.Quiet {
			window = window[1:]
		}
		if !m.shouldReturn(window, last) {
			continue
		}
		debug.FreeOSMemory()
		after := readMemSample()
		last = after.at
		window = window[:0]
		idleMemoryReturns.Inc()
		idleMemoryReturned.Add(float64(s.reclaimable()))
		logger.V(1).Info("returned idle memory to the system", "reclaimableBytes", s.reclaimable(), "liveHeapBytes", after.live)
		if m.onFree != nil {
			m.onFree(s)
		}
	}
}

// NeedLeaderElection is false: a standby manager's cache has bursts of its own.
func (m *IdleMemory) NeedLeaderElection() bool { return false }
