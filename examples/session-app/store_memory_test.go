package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Sticky mode without a store: sessions live in the instance's memory.
func TestStickyInMemorySessions(t *testing.T) {
	cfg := mustConfig(t, map[string]string{"SESSION_MODE": "Sticky", "SESSION_TTL": "30m0s"})
	if cfg.Backend != BackendMemory {
		t.Fatalf("backend %q, want memory", cfg.Backend)
	}
	store := newMemoryStore(cfg.TTL)
	t.Cleanup(func() { _ = store.Close() })
	ta := newTestApp(t, cfg, store)

	s := ta.login(t)
	if s.Instance != cfg.Instance || s.Instance == "" {
		t.Fatalf("instance %q, want %q", s.Instance, cfg.Instance)
	}
	ta.bump(t, s.ID, 1)
	ta.bump(t, s.ID, 2)
	if code, n := ta.peek(t, s.ID); code != 200 || n != 2 {
		t.Fatalf("peek: %d %d", code, n)
	}
	if code, _ := ta.call(t, http.MethodGet, "/session/peek", s.ID); code != 200 {
		t.Fatalf("/session/peek: %d", code)
	}
	ta.bump(t, s.ID, 3) // peeks did not bump

	// Another instance (another pod) does not know the session: that is what
	// sticky-only users get when their pod goes away.
	other := newTestApp(t, cfg, newMemoryStore(cfg.TTL))
	if code, _ := other.call(t, http.MethodGet, "/session", s.ID); code != http.StatusUnauthorized {
		t.Fatalf("other instance: %d, want 401", code)
	}
	for _, sid := range []string{"", newSessionID(), strings.ToUpper(s.ID), s.ID + "0"} {
		if code, _ := ta.call(t, http.MethodGet, "/session", sid); code != http.StatusUnauthorized {
			t.Fatalf("GET /session with %q: %d, want 401", sid, code)
		}
	}
	if code, _ := ta.call(t, http.MethodPut, "/login", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT /login: %d, want 405", code)
	}
	if code, _ := ta.call(t, http.MethodGet, "/login", ""); code != http.StatusOK {
		t.Fatalf("GET /login: %d, want 200", code)
	}
}

// The cookie path, as a browser would use it.
func TestStickyCookie(t *testing.T) {
	cfg := mustConfig(t, map[string]string{"SESSION_COOKIE_NAME": "app_sid", "SESSION_TTL": "2h"})
	ta := newTestApp(t, cfg, newMemoryStore(cfg.TTL))
	resp, err := ta.srv.Client().Post(ta.srv.URL+"/login", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "app_sid" {
			c = k
		}
	}
	if c == nil || !validSessionID(c.Value) || !c.HttpOnly || c.MaxAge != 7200 || c.Path != "/" {
		t.Fatalf("login cookie: %+v", c)
	}
	req, _ := http.NewRequest(http.MethodGet, ta.srv.URL+"/session", nil)
	req.AddCookie(&http.Cookie{Name: "app_sid", Value: c.Value})
	resp, err = ta.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /session with cookie: %d", resp.StatusCode)
	}
	if got, _ := ta.store.Get(context.Background(), c.Value); got.Counter != 1 {
		t.Fatalf("counter %d after one bump", got.Counter)
	}
}

func TestMemoryStoreExpiry(t *testing.T) {
	s := newMemoryStore(time.Minute)
	defer s.Close()
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	id := newSessionID()
	if _, err := s.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	now = now.Add(50 * time.Second)
	if got, err := s.Incr(ctx, id); err != nil || got.Counter != 1 {
		t.Fatalf("Incr: %+v %v", got, err)
	}
	now = now.Add(50 * time.Second) // the bump slid the expiry: still alive
	if _, err := s.Get(ctx, id); err != nil {
		t.Fatalf("Get after sliding: %v", err)
	}
	now = now.Add(11 * time.Second)
	if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after expiry: %v, want ErrNotFound", err)
	}
	if _, err := s.Incr(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Incr after expiry: %v, want ErrNotFound", err)
	}
	other := newSessionID()
	_, _ = s.Create(ctx, other)
	now = now.Add(2 * time.Minute)
	s.sweep()
	if n := s.len(); n != 0 {
		t.Fatalf("%d sessions left after sweep", n)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	cfg := mustConfig(t, map[string]string{})
	ta := newTestApp(t, cfg, newMemoryStore(cfg.TTL))
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := ta.call(t, http.MethodGet, p, ""); code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
	}
	ta.login(t)
	m := ta.metricsText(t)
	for _, want := range []string{
		"session_app_sessions_created_total 1",
		`session_app_http_request_duration_seconds_bucket{code="200",route="/login",le="+Inf"} 1`,
		`session_app_store_errors_total{operation="incr"} 0`,
		`session_app_info{backend="memory"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// While draining (SIGTERM received) the instance reports not ready but still serves.
	ta.app.draining.Store(true)
	if code, _ := ta.call(t, http.MethodGet, "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining: %d, want 503", code)
	}
	if code, _ := ta.call(t, http.MethodGet, "/healthz", ""); code != 200 {
		t.Fatalf("/healthz while draining: %d", code)
	}
}

// A failing store is a 503 and counts an error by operation.
func TestStoreFailureIs503(t *testing.T) {
	cfg := mustConfig(t, map[string]string{})
	ta := newTestApp(t, cfg, failingStore{})
	if code, _ := ta.call(t, http.MethodPost, "/login", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("login: %d", code)
	}
	if code, _ := ta.call(t, http.MethodGet, "/session", newSessionID()); code != http.StatusServiceUnavailable {
		t.Fatalf("session: %d", code)
	}
	if code, _ := ta.call(t, http.MethodGet, "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz: %d", code)
	}
	m := ta.metricsText(t)
	for _, want := range []string{`operation="create"} 1`, `operation="incr"} 1`, `operation="ping"} 1`} {
		if !strings.Contains(m, "session_app_store_errors_total{"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

type failingStore struct{}

var errDown = errors.New("store down")

func (failingStore) Create(context.Context, string) (Session, error) { return Session{}, errDown }
func (failingStore) Incr(context.Context, string) (Session, error)   { return Session{}, errDown }
func (failingStore) Get(context.Context, string) (Session, error)    { return Session{}, errDown }
func (failingStore) Ready(context.Context) error                     { return errDown }
func (failingStore) Close() error                                    { return nil }
