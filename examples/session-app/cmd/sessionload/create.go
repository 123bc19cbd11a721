package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

type createSummary struct {
	Command        string         `json:"command"`
	Requested      int            `json:"requested"`
	Created        int            `json:"created"`
	FailedLogins   int            `json:"failed_logins"`
	FailedBumps    int            `json:"failed_bumps"`
	Retried        int            `json:"retried_requests"`
	PerURL         map[string]int `json:"per_url"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`
	Login          latencyStats   `json:"login_latency"`
	Out            string         `json:"out"`
	FirstError     string         `json:"first_error,omitempty"`
}

func cmdCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("create", "log in N sessions round-robin over the app URLs, optionally bump each, "+
		"and record every session id with its last acknowledged counter", stderr)
	urlsFlag := fs.String("urls", "", "comma-separated app base URLs, e.g. http://127.0.0.1:8080,http://127.0.0.1:8081 (required)")
	n := fs.Int("n", 1000, "number of sessions to create")
	bumps := fs.Int("bumps", 1, "GET /session calls per session after login, on the URL that created it")
	concurrency := fs.Int("concurrency", 16, "parallel requests")
	out := fs.String("out", "sessions.json", "state file to write")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	retries := fs.Int("retries", 3, "retries of a login or bump that failed with a transport error or 5xx, 500ms apart")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	urls, err := parseURLs(*urlsFlag)
	if err != nil || *n < 1 || *concurrency < 1 || *bumps < 0 || *retries < 0 {
		if err == nil {
			err = fmt.Errorf("-n and -concurrency must be at least 1, -bumps and -retries at least 0")
		}
		fmt.Fprintf(stderr, "sessionload create: %v\n", err)
		return 2
	}

	c := newAppClient(*timeout, *concurrency)
	start := time.Now()
	sessions := make([]*sessionState, *n)
	latencies := make([]time.Duration, *n)
	var (
		mu           sync.Mutex
		failedLogins int
		failedBumps  int
		retried      int
		firstErr     string
	)
	count := func(n int) {
		mu.Lock()
		retried += n
		mu.Unlock()
	}
	fail := func(login bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if login {
			failedLogins++
		} else {
			failedBumps++
		}
		if firstErr == "" {
			firstErr = err.Error()
		}
	}
	parallelFor(*n, *concurrency, func(i int) {
		base := urls[i%len(urls)]
		r, n := retrying(*retries, func() result { return c.login(context.Background(), base) })
		count(n)
		latencies[i] = r.Latency
		if r.Err != nil {
			fail(true, r.Err)
			return
		}
		s := &sessionState{ID: r.Body.ID, Acked: r.Body.Counter, URL: base}
		for b := 0; b < *bumps; b++ {
			r, n := retrying(*retries, func() result { return c.bump(context.Background(), base, s.ID) })
			count(n)
			if r.Err != nil {
				fail(false, r.Err)
				continue
			}
			s.Acked = max(s.Acked, r.Body.Counter)
		}
		sessions[i] = s
	})

	st := &stateFile{Version: 1, Created: start.UTC(), URLs: urls}
	perURL := map[string]int{}
	for _, s := range sessions {
		if s != nil {
			st.Sessions = append(st.Sessions, *s)
			perURL[s.URL]++
		}
	}
	if err := writeState(*out, st); err != nil {
		fmt.Fprintf(stderr, "sessionload create: %v\n", err)
		return 1
	}
	printJSON(stdout, createSummary{
		Command: "create", Requested: *n, Created: len(st.Sessions), FailedLogins: failedLogins,
		FailedBumps: failedBumps, Retried: retried, PerURL: perURL, ElapsedSeconds: time.Since(start).Seconds(),
		Login: summarize(latencies), Out: *out, FirstError: firstErr,
	})
	if failedLogins > 0 || failedBumps > 0 {
		return 1
	}
	return 0
}
