//go:build datapath

package datapath

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The harness's own bookkeeping, checked before it is trusted with the verdict.

func TestHostsRestoredExactly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	orig := "127.0.0.1 localhost\n::1 localhost ip6-localhost" // no final newline
	must(t, os.WriteFile(path, []byte(orig), 0o644))
	h, err := addHosts(path, map[string]string{"b.example": "127.0.0.22", "a.example": "127.0.0.21"})
	must(t, err)
	raw, _ := os.ReadFile(path)
	want := orig + "\n" + hostsBegin + " (pid " + strconv.Itoa(os.Getpid()) + ")\n127.0.0.21\ta.example\n127.0.0.22\tb.example\n" + hostsEnd + "\n"
	if string(raw) != want {
		t.Fatalf("edited hosts:\n%q\nwant\n%q", raw, want)
	}
	must(t, h.restore())
	must(t, h.restore()) // idempotent
	if raw, _ := os.ReadFile(path); string(raw) != orig {
		t.Fatalf("restored %q, want %q", raw, orig)
	}

	// Someone else edits the file meanwhile: their line stays, ours goes.
	h, err = addHosts(path, map[string]string{"a.example": "127.0.0.21"})
	must(t, err)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("10.0.0.1 other\n")
	f.Close()
	must(t, h.restore())
	if raw, _ := os.ReadFile(path); string(raw) != orig+"\n10.0.0.1 other\n" {
		t.Fatalf("restored %q", raw)
	}

	// A block left by a killed run is dropped by the next one.
	must(t, os.WriteFile(path, []byte(orig+"\n"+hostsBegin+" (pid 1)\n127.0.0.9\tx\n"+hostsEnd+"\n"), 0o644))
	h, err = addHosts(path, map[string]string{"a.example": "127.0.0.21"})
	must(t, err)
	must(t, h.restore())
	if raw, _ := os.ReadFile(path); string(raw) != orig+"\n" {
		t.Fatalf("restored %q", raw)
	}
}

func ev(op, id string, ok bool, status int, counter int64) writeEvent {
	return writeEvent{Start: time.Now(), End: time.Now(), Op: op, ID: id, OK: ok, Status: status, Counter: counter}
}

func TestLedgerCountsLostWrites(t *testing.T) {
	l := newLedger()
	l.record(ev("login", "s1", true, 200, 0))
	l.record(ev("bump", "s1", true, 200, 1))
	l.record(ev("bump", "s1", true, 200, 2))
	l.record(ev("bump", "s1", false, 503, 0)) // not acknowledged (may have applied: 3)
	l.record(ev("bump", "s1", true, 200, 4))  // 3 was applied after all: fine
	if a, lost := l.counts(); a != 4 || lost != 0 {
		t.Fatalf("acked %d lost %d, want 4 and 0", a, lost)
	}
	// A failover rolled s1 back to 2: the next bump answers 3, so 4 was lost.
	l.record(ev("bump", "s1", true, 200, 3))
	if _, lost := l.counts(); lost != 1 {
		t.Fatalf("lost %d, want 1", lost)
	}
	// The final read shows 3: nothing more lost.
	l.record(ev("read", "s1", true, 200, 3))
	if _, lost := l.counts(); lost != 1 || l.sessionsLost() != 1 {
		t.Fatalf("lost %d (%d sessions), want 1 (1)", l.lost, l.sessionsLost())
	}

	// A rollback past values confirmed long ago still counts them.
	l.record(ev("bump", "s1", true, 200, 4))
	l.record(ev("bump", "s1", true, 200, 5))
	l.record(ev("read", "s1", true, 200, 1)) // 2, 3, the second 4 and 5 lost
	if _, lost := l.counts(); lost != 5 {
		t.Fatalf("lost %d, want 5", lost)
	}

	l.record(ev("login", "s2", true, 200, 0))
	l.record(ev("bump", "s2", true, 200, 1))
	l.record(ev("read", "s2", false, 401, 0)) // the session vanished: 0 and 1 lost
	if _, lost := l.counts(); lost != 7 || l.sessionsLost() != 2 {
		t.Fatalf("lost %d (%d sessions), want 7 (2)", l.lost, l.sessionsLost())
	}

	l.record(ev("login", "s3", true, 200, 0))
	l.record(ev("bump", "s3", true, 200, 1))
	l.record(ev("read", "s3", true, 200, 1))
	l.record(ev("read", "s3", false, 0, 0)) // a transport error says nothing
	if _, lost := l.counts(); lost != 7 || l.sessionsLost() != 2 {
		t.Fatalf("lost %d (%d sessions), want 7 (2)", l.lost, l.sessionsLost())
	}
}

func TestExpandVars(t *testing.T) {
	vals := map[string]string{"REDIS_PASSWORD": "p w", "A": "x"}
	for in, want := range map[string]string{
		"redis://:$(REDIS_PASSWORD)@h:6379/0": "redis://:p w@h:6379/0",
		"$(A)$(A)":                            "xx",
		"$$(A)":                               "$(A)",
		"$(UNDEFINED)":                        "$(UNDEFINED)",
		"$(A":                                 "$(A",
		"cost $5":                             "cost $5",
		"end$":                                "end$",
	} {
		if got := expandVars(in, vals); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
