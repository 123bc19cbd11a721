package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SessionHeader lets a client (a load tool) name its session without a cookie jar.
const SessionHeader = "X-Session-Id"

// app holds what the HTTP handlers share.
type app struct {
	cfg      Config
	store    Store
	m        *metrics
	draining atomic.Bool
	errLog   rateLimitedLog
}

// sessionResponse is the body of /login and /session.
type sessionResponse struct {
	ID       string `json:"id"`
	Counter  int64  `json:"counter"`
	Instance string `json:"instance"`
}

func newApp(cfg Config, store Store, m *metrics) *app {
	return &app{cfg: cfg, store: store, m: m}
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.m.instrument("/login", a.login))
	mux.HandleFunc("GET /login", a.m.instrument("/login", a.login))
	mux.HandleFunc("GET /session", a.m.instrument("/session", a.session))
	mux.HandleFunc("GET /session/peek", a.m.instrument("/session/peek", a.peek))
	mux.HandleFunc("GET /healthz", a.m.instrument("/healthz", a.healthz))
	mux.HandleFunc("GET /readyz", a.m.instrument("/readyz", a.readyz))
	mux.Handle("GET /metrics", a.m.handler())
	return mux
}

// login creates a session with counter 0 and hands its id out as a cookie.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	id := newSessionID()
	s, err := a.store.Create(r.Context(), id)
	if err != nil {
		a.storeFailed(w, "create", err)
		return
	}
	a.m.sessionsCreated.Inc()
	a.setCookie(w, r, id)
	a.writeSession(w, s)
}

// session bumps the counter, or only reads it with ?read=1.
func (a *app) session(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("read") == "1" {
		a.peek(w, r)
		return
	}
	id, fromCookie := a.sessionID(r)
	if id == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no session: log in first"})
		return
	}
	s, err := a.store.Incr(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unknown or expired session"})
		return
	}
	if err != nil {
		a.storeFailed(w, "incr", err)
		return
	}
	if fromCookie {
		a.setCookie(w, r, id) // slide the cookie's lifetime with the session's
	}
	a.writeSession(w, s)
}

// peek reads the session without changing it (for harnesses that verify).
func (a *app) peek(w http.ResponseWriter, r *http.Request) {
	id, _ := a.sessionID(r)
	if id == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no session: log in first"})
		return
	}
	s, err := a.store.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unknown or expired session"})
		return
	}
	if err != nil {
		a.storeFailed(w, "get", err)
		return
	}
	a.writeSession(w, s)
}

func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz: the backend is usable (Redis answers PING through the same client,
// or memberlist has joined its peers or found none), and we are not draining.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ready(ctx); err != nil {
		a.m.storeErrors.WithLabelValues("ping").Inc()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "backend": a.cfg.Backend})
}

// sessionID takes the id from X-Session-Id, else from the cookie. Ids that
// newSessionID could not have made are treated as absent.
func (a *app) sessionID(r *http.Request) (id string, fromCookie bool) {
	if h := r.Header.Get(SessionHeader); h != "" {
		if validSessionID(h) {
			return h, false
		}
		return "", false
	}
	if c, err := r.Cookie(a.cfg.CookieName); err == nil && validSessionID(c.Value) {
		return c.Value, true
	}
	return "", false
}

func (a *app) setCookie(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{
		Name:     a.cfg.CookieName,
		Value:    id,
		Path:     "/",
		MaxAge:   int(a.cfg.TTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
		SameSite: http.SameSiteLaxMode,
	})
}

func (a *app) writeSession(w http.ResponseWriter, s Session) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sessionResponse{ID: s.ID, Counter: s.Counter, Instance: a.cfg.Instance})
}

// storeFailed answers 503: the session may or may not have been written, but
// it was not acknowledged (for Redis: not on enough replicas).
func (a *app) storeFailed(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, ErrNotReplicated) {
		op = "wait"
	}
	a.m.storeErrors.WithLabelValues(op).Inc()
	a.errLog.printf("session store %s failed: %v", op, err)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session store unavailable: " + err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// rateLimitedLog prints at most one line a second and counts what it dropped,
// so a store outage under load does not flood the log.
type rateLimitedLog struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (l *rateLimitedLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < time.Second {
		l.dropped++
		return
	}
	if l.dropped > 0 {
		log.Printf("(%d similar messages suppressed)", l.dropped)
	}
	l.last, l.dropped = time.Now(), 0
	log.Printf(format, args...)
}
