package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeApp is a minimal stand-in for the session app with knobs to lose or
// roll back sessions and to fail for a while.
type fakeApp struct {
	prefix   string // first hex digit of the ids it makes, so instances never share one
	mu       sync.Mutex
	sessions map[string]int64
	next     int
	failing  atomic.Bool
}

func newFakeApp(prefix string) *fakeApp {
	return &fakeApp{prefix: prefix, sessions: map[string]int64{}}
}

func (f *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.failing.Load() {
		http.Error(w, `{"error":"store down"}`, http.StatusServiceUnavailable)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(id string, n int64) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"counter":%d,"instance":"fake"}`, id, n)
	}
	switch r.URL.Path {
	case "/login":
		f.next++
		id := fmt.Sprintf("%s%031x", f.prefix, f.next)
		f.sessions[id] = 0
		reply(id, 0)
	case "/session":
		id := r.Header.Get("X-Session-Id")
		n, ok := f.sessions[id]
		if !ok {
			http.Error(w, `{"error":"unknown"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("read") != "1" {
			n++
			f.sessions[id] = n
		}
		reply(id, n)
	default:
		http.NotFound(w, r)
	}
}

func runCmd(t *testing.T, args ...string) (int, map[string]any) {
	t.Helper()
	var out, errb bytes.Buffer
	code := realMain(args, &out, &errb)
	var m map[string]any
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("%v: stdout is not one JSON line: %q", args, out.String())
		}
	}
	if errb.Len() > 0 {
		t.Logf("%v stderr: %s", args, errb.String())
	}
	return code, m
}

func TestCreateRunVerify(t *testing.T) {
	a, b := newFakeApp("a"), newFakeApp("b")
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	dir := t.TempDir()
	state := filepath.Join(dir, "s.json")

	code, sum := runCmd(t, "create", "-urls", sa.URL+","+sb.URL, "-n", "40", "-bumps", "2", "-out", state)
	if code != 0 || sum["created"].(float64) != 40 {
		t.Fatalf("create: %d %v", code, sum)
	}
	st, err := readState(state)
	if err != nil || len(st.Sessions) != 40 || st.Sessions[0].Acked != 2 {
		t.Fatalf("state: %+v %v", st, err)
	}
	if per := sum["per_url"].(map[string]any); per[sa.URL].(float64) != 20 || per[sb.URL].(float64) != 20 {
		t.Fatalf("per_url: %v", per)
	}

	// Sessions live on the instance that created them, so verify each half.
	if code, sum = runCmd(t, "run", "-urls", sa.URL, "-in", state, "-duration", "1s"); code != 1 {
		t.Fatalf("run against one instance only should see unknown sessions: %d %v", code, sum)
	}
	code, sum = runCmd(t, "run", "-urls", sa.URL+","+sb.URL, "-sticky", "-in", state,
		"-requests", "200", "-duration", "10s", "-clients", "3", "-events", filepath.Join(dir, "ev.jsonl"))
	if code != 0 || sum["ok"].(float64) != 200 || sum["went_backwards"].(float64) != 0 {
		t.Fatalf("run: %d %v", code, sum)
	}
	ev, _ := os.ReadFile(filepath.Join(dir, "ev.jsonl"))
	if n := strings.Count(string(ev), "\n"); n != 200 {
		t.Fatalf("%d events, want 200", n)
	}

	// Verify through the instance that has them: nothing lost.
	code, sum = runCmd(t, "verify", "-urls", sa.URL, "-in", state)
	if code != 1 || sum["lost_unknown"].(float64) != 20 {
		t.Fatalf("verify through A alone should miss B's 20 sessions: %d %v", code, sum)
	}
	// Make A hold everything, then lose one and roll one back.
	st, _ = readState(state)
	a.mu.Lock()
	for _, s := range st.Sessions {
		a.sessions[s.ID] = s.Acked
	}
	delete(a.sessions, st.Sessions[0].ID)
	a.sessions[st.Sessions[1].ID] = st.Sessions[1].Acked - 1
	a.mu.Unlock()
	report := filepath.Join(dir, "report.json")
	code, sum = runCmd(t, "verify", "-url", sa.URL, "-in", state, "-report", report)
	if code != 1 || sum["lost"].(float64) != 2 || sum["lost_unknown"].(float64) != 1 ||
		sum["lost_rolled_back"].(float64) != 1 || sum["ok"].(float64) != 38 {
		t.Fatalf("verify: %d %v", code, sum)
	}
	if b, err := os.ReadFile(report); err != nil || !strings.Contains(string(b), "rolled_back") {
		t.Fatalf("report: %v %s", err, b)
	}
	a.mu.Lock()
	a.sessions[st.Sessions[0].ID] = st.Sessions[0].Acked
	a.sessions[st.Sessions[1].ID] = st.Sessions[1].Acked
	a.mu.Unlock()
	if code, sum = runCmd(t, "verify", "-url", sa.URL, "-in", state); code != 0 || sum["ok"].(float64) != 40 {
		t.Fatalf("verify: %d %v", code, sum)
	}
}

func TestRunReportsOutage(t *testing.T) {
	a := newFakeApp("a")
	sa := httptest.NewServer(a)
	defer sa.Close()
	state := filepath.Join(t.TempDir(), "s.json")
	if code, _ := runCmd(t, "create", "-urls", sa.URL, "-n", "4", "-out", state); code != 0 {
		t.Fatal("create failed")
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		a.failing.Store(true)
		time.Sleep(500 * time.Millisecond)
		a.failing.Store(false)
	}()
	code, sum := runCmd(t, "run", "-urls", sa.URL, "-in", state, "-duration", "1500ms", "-clients", "2", "-interval", "10ms")
	if code != 0 {
		t.Fatalf("run: %d %v", code, sum)
	}
	outages := sum["outages"].([]any)
	if len(outages) != 1 {
		t.Fatalf("outages: %v", outages)
	}
	secs := outages[0].(map[string]any)["seconds"].(float64)
	if secs < 0.45 || secs > 1 || sum["max_gap_seconds"].(float64) < 0.45 {
		t.Fatalf("outage of %.3fs, max gap %v; want about 0.5s", secs, sum["max_gap_seconds"])
	}
	if sum["status"].(map[string]any)["503"].(float64) < 1 {
		t.Fatalf("no 503 counted: %v", sum["status"])
	}
}

// A store that is unavailable for a moment during setup delays create, it does not fail
// it; one that stays unavailable past the retries does.
func TestCreateRetriesUnavailableStore(t *testing.T) {
	a := newFakeApp("a")
	sa := httptest.NewServer(a)
	defer sa.Close()
	state := filepath.Join(t.TempDir(), "s.json")
	a.failing.Store(true)
	time.AfterFunc(700*time.Millisecond, func() { a.failing.Store(false) })
	code, sum := runCmd(t, "create", "-urls", sa.URL, "-n", "4", "-concurrency", "2", "-out", state)
	if code != 0 || sum["created"].(float64) != 4 || sum["retried_requests"].(float64) < 2 {
		t.Fatalf("create across a 0.7 s outage: %d %v", code, sum)
	}
	a.failing.Store(true)
	code, sum = runCmd(t, "create", "-urls", sa.URL, "-n", "2", "-retries", "1", "-out", state)
	if code != 1 || sum["failed_logins"].(float64) != 2 || sum["retried_requests"].(float64) != 2 {
		t.Fatalf("create against a store that stays down: %d %v", code, sum)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"create"}, {"create", "-urls", "ftp://x"}, {"run", "-urls", "http://x", "-op", "write"}} {
		if code, _ := runCmd(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _ := runCmd(t, "verify", "-h"); code != 0 {
		t.Errorf("verify -h: exit %d, want 0", code)
	}
}
