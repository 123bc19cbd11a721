package manager

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestIdleMemoryDecision(t *testing.T) {
	m := NewIdleMemory()
	t0 := time.Unix(1000, 0)
	// objects holds only the live heap: what is reclaimable is free.
	at := func(s float64, allocatedMiB, freeMiB, liveMiB uint64) memSample {
		return memSample{at: t0.Add(time.Duration(s * float64(time.Second))), allocated: allocatedMiB << 20, free: freeMiB << 20, objects: liveMiB << 20, live: liveMiB << 20}
	}
	withDead := func(s memSample, deadMiB uint64) memSample { s.objects += deadMiB << 20; return s }
	cases := []struct {
		name   string
		window []memSample
		last   time.Time
		want   bool
	}{
		{"quiet after a burst", []memSample{at(0, 1000, 150, 300), at(3, 1006, 150, 300)}, time.Time{}, true},
		{"still allocating", []memSample{at(0, 1000, 150, 300), at(3, 1100, 150, 300)}, time.Time{}, false},
		{"quiet for less than Quiet", []memSample{at(0, 1000, 150, 300), at(2, 1000, 150, 300)}, time.Time{}, false},
		{"little free for the live heap", []memSample{at(0, 1000, 35, 300), at(3, 1000, 35, 300)}, time.Time{}, false},
		{"an eighth of the live heap free", []memSample{at(0, 1000, 40, 300), at(3, 1000, 40, 300)}, time.Time{}, true},
		{"small heap, under MinFree", []memSample{at(0, 100, 20, 10), at(3, 100, 20, 10)}, time.Time{}, false},
		{"small heap, a burst's worth free", []memSample{at(0, 100, 40, 10), at(3, 100, 40, 10)}, time.Time{}, true},
		{"returned less than MinGap ago", []memSample{at(0, 1000, 150, 300), at(3, 1000, 150, 300)}, t0.Add(-30 * time.Second), false},
		{"returned more than MinGap ago", []memSample{at(0, 1000, 150, 300), at(3, 1000, 150, 300)}, t0.Add(-90 * time.Second), true},
		{"one sample", []memSample{at(3, 1000, 150, 300)}, time.Time{}, false},
		{"dead objects not yet collected count", []memSample{at(0, 1000, 10, 300), withDead(at(3, 1000, 10, 300), 100)}, time.Time{}, true},
	}
	for _, c := range cases {
		if got := m.shouldReturn(c.window, c.last); got != c.want {
			t.Errorf("%s: shouldReturn = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestIdleMemoryReturnsAfterABurst runs the loop on this process's own runtime: a burst of
// garbage leaves free heap that only the idle return gives back within the test's time,
// and nothing is returned while the process keeps allocating.
func TestIdleMemoryReturnsAfterABurst(t *testing.T) {
	var returns atomic.Int32
	m := &IdleMemory{Interval: 20 * time.Millisecond, Quiet: 200 * time.Millisecond, MaxAllocRate: 1 << 20, MinFree: 32 << 20, MinGap: time.Minute,
		onFree: func(memSample) { returns.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { _ = m.Start(ctx); close(done) }()

	// Busy: 4 MiB every 10 ms, far above the quiet rate, for longer than Quiet.
	var sink [][]byte
	for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); {
		sink = append(sink, make([]byte, 4<<20))
		if len(sink) > 32 {
			sink = sink[:0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := returns.Load(); n != 0 {
		t.Fatalf("returned memory %d times while the process allocated 400 MiB/s", n)
	}
	// The burst's end: its garbage collected, its pages free but kept by the runtime.
	sink = nil
	runtime.GC()
	if free := readMemSample().free; free < 64<<20 {
		t.Fatalf("only %d MiB free after the burst; the test needs its garbage kept by the runtime", free>>20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for returns.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if returns.Load() != 1 {
		t.Fatalf("%d returns within 5 s of going quiet, want 1", returns.Load())
	}
	if free := readMemSample().free; free >= 32<<20 {
		t.Errorf("%d MiB still free and kept after the return", free>>20)
	}
	cancel()
	<-done
	runtime.KeepAlive(sink)
}
