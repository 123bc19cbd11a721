package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// testApp is one app instance behind an httptest server.
type testApp struct {
	srv   *httptest.Server
	app   *app
	store Store
}

func mustConfig(t *testing.T, env map[string]string) Config {
	t.Helper()
	cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return cfg
}

func newTestApp(t *testing.T, cfg Config, store Store) *testApp {
	t.Helper()
	a := newApp(cfg, store, newMetrics(cfg.Backend))
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	return &testApp{srv: srv, app: a, store: store}
}

// call sends one request; sid goes in X-Session-Id when not empty.
func (ta *testApp) call(t *testing.T, method, path, sid string) (int, sessionResponse) {
	t.Helper()
	req, err := http.NewRequest(method, ta.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sid != "" {
		req.Header.Set(SessionHeader, sid)
	}
	resp, err := ta.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var s sessionResponse
	isSession := strings.HasPrefix(path, "/login") || strings.HasPrefix(path, "/session")
	if resp.StatusCode == http.StatusOK && isSession {
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode, s
}

func (ta *testApp) login(t *testing.T) sessionResponse {
	t.Helper()
	code, s := ta.call(t, http.MethodPost, "/login", "")
	if code != http.StatusOK {
		t.Fatalf("POST /login: status %d", code)
	}
	if !validSessionID(s.ID) || s.Counter != 0 {
		t.Fatalf("POST /login: got %+v", s)
	}
	return s
}

func (ta *testApp) bump(t *testing.T, sid string, want int64) {
	t.Helper()
	code, s := ta.call(t, http.MethodGet, "/session", sid)
	if code != http.StatusOK || s.ID != sid || s.Counter != want {
		t.Fatalf("GET /session: status %d body %+v, want counter %d", code, s, want)
	}
}

func (ta *testApp) peek(t *testing.T, sid string) (int, int64) {
	t.Helper()
	code, s := ta.call(t, http.MethodGet, "/session?read=1", sid)
	return code, s.Counter
}

func (ta *testApp) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := ta.srv.Client().Get(ta.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
