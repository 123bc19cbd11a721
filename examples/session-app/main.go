// Command session-app is the session operator's reference application: a
// small web service that keeps a per-user session (an id and a counter) in
// whatever backend the operator's wiring env describes. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	// SIGTERM (Kubernetes) or Ctrl-C start a graceful shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.LookupEnv, nil); err != nil {
		log.Fatalf("session-app: %v", err)
	}
}

// run serves until ctx is done, then shuts down gracefully. listening, when
// not nil, is told the address once the HTTP listener is up (for tests).
func run(ctx context.Context, lookup func(string) (string, bool), listening func(addr string)) error {
	cfg, err := LoadConfig(lookup)
	if err != nil {
		return err
	}
	if cfg.Mode == ModeStore && cfg.Backend != BackendRedis {
		log.Printf("WARNING: SESSION_MODE=Store but no SESSION_REDIS_* wiring: sessions stay in this process only")
	}
	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	a := newApp(cfg, store, newMetrics(cfg.Backend))

	srv := &http.Server{
		Addr:              net.JoinHostPort("", strconv.Itoa(cfg.Port)),
		Handler:           a.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		_ = store.Close()
		return err
	}
	log.Printf("session-app %s: mode=%s backend=%s ttl=%s listening on %s",
		cfg.Instance, cfg.Mode, cfg.Backend, cfg.TTL, ln.Addr())
	if listening != nil {
		listening(ln.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		_ = store.Close()
		return err
	case <-ctx.Done():
	}
	return shutdown(a, srv, store)
}

// shutdown: report not-ready, stop accepting, let in-flight requests finish,
// then leave the cluster / close the Redis pool.
func shutdown(a *app, srv *http.Server, store Store) error {
	log.Printf("shutting down: draining requests")
	a.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	if cerr := store.Close(); cerr != nil {
		log.Printf("closing session store: %v", cerr)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Printf("stopped")
	return nil
}

// openStore builds the backend chosen by LoadConfig.
func openStore(cfg Config) (Store, error) {
	switch cfg.Backend {
	case BackendRedis:
		return newRedisStore(cfg, newRedisClient(cfg)), nil
	case BackendCluster:
		name := cfg.PodName
		if name == "" {
			name = cfg.Instance
		}
		bind := cfg.PodIP
		if bind == "" {
			bind = "0.0.0.0"
		}
		var peers func(context.Context) ([]string, error)
		if cfg.PeersDNS != "" {
			peers = dnsPeers(cfg.PeersDNS, cfg.PeersPort)
		} else {
			log.Printf("SESSION_PEERS_DNS is empty: this instance will not find peers")
		}
		s, err := newClusterStore(clusterOptions{
			Name:          name,
			BindAddr:      bind,
			AdvertiseAddr: cfg.PodIP,
			Port:          cfg.PeersPort,
			TTL:           cfg.TTL,
			Peers:         peers,
		})
		if err != nil {
			return nil, fmt.Errorf("clustered sessions: %w", err)
		}
		return s, nil
	default:
		return newMemoryStore(cfg.TTL), nil
	}
}
