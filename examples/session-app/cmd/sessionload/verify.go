package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// lostSession is one session verify could not find as acknowledged.
type lostSession struct {
	ID     string `json:"id"`
	Acked  int64  `json:"acked"`
	Got    int64  `json:"got,omitempty"`
	Status int    `json:"status"`
	Reason string `json:"reason"` // unknown | rolled_back | unverified
	URL    string `json:"url"`
	Err    string `json:"err,omitempty"`
}

type verifySummary struct {
	Command    string        `json:"command"`
	Checked    int           `json:"checked"`
	OK         int           `json:"ok"`
	Lost       int           `json:"lost"` // unknown + rolled_back
	Unknown    int           `json:"lost_unknown"`
	RolledBack int           `json:"lost_rolled_back"`
	Unverified int           `json:"unverified"`
	Latency    latencyStats  `json:"latency"`
	Examples   []lostSession `json:"examples,omitempty"` // the first few problems
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("verify", "read every recorded session (GET /session?read=1, no increment) through the given URLs "+
		"and count the lost ones: unknown to the app (401) or with a counter below the last acknowledged one", stderr)
	urlsFlag := fs.String("urls", "", "comma-separated app base URLs to read through, round-robin (required)")
	urlAlias := fs.String("url", "", "same as -urls")
	in := fs.String("in", "sessions.json", "state file from create/run")
	report := fs.String("report", "", "also write the full report (every problem session) to this JSON file")
	retries := fs.Int("retries", 3, "retries of a read that failed with a transport error or 5xx, 500ms apart")
	concurrency := fs.Int("concurrency", 16, "parallel reads")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *urlsFlag == "" {
		*urlsFlag = *urlAlias
	}
	urls, err := parseURLs(*urlsFlag)
	if err == nil && (*concurrency < 1 || *retries < 0) {
		err = fmt.Errorf("-concurrency must be at least 1 and -retries at least 0")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionload verify: %v\n", err)
		return 2
	}
	st, err := readState(*in)
	if err != nil {
		fmt.Fprintf(stderr, "sessionload verify: %v\n", err)
		return 2
	}

	c := newAppClient(*timeout, *concurrency)
	problems := make([]*lostSession, len(st.Sessions))
	latencies := make([]time.Duration, len(st.Sessions))
	parallelFor(len(st.Sessions), *concurrency, func(i int) {
		s := st.Sessions[i]
		base := urls[i%len(urls)]
		r, _ := retrying(*retries, func() result { return c.peek(context.Background(), base, s.ID) })
		latencies[i] = r.Latency
		p := &lostSession{ID: s.ID, Acked: s.Acked, Status: r.Status, URL: base}
		switch {
		case r.Status == http.StatusOK && r.Body.Counter >= s.Acked:
			return
		case r.Status == http.StatusOK:
			p.Reason, p.Got = "rolled_back", r.Body.Counter
		case r.Status == http.StatusUnauthorized:
			p.Reason = "unknown"
		default:
			p.Reason = "unverified"
		}
		if r.Err != nil {
			p.Err = r.Err.Error()
		}
		problems[i] = p
	})

	sum := verifySummary{Command: "verify", Checked: len(st.Sessions), Latency: summarize(latencies)}
	var all []lostSession
	for _, p := range problems {
		if p == nil {
			sum.OK++
			continue
		}
		all = append(all, *p)
		switch p.Reason {
		case "unknown":
			sum.Unknown++
		case "rolled_back":
			sum.RolledBack++
		default:
			sum.Unverified++
		}
	}
	sum.Lost = sum.Unknown + sum.RolledBack
	sum.Examples = all[:min(len(all), 5)]
	if *report != "" {
		full := struct {
			verifySummary
			Problems []lostSession `json:"problems"`
		}{sum, all}
		b, _ := json.MarshalIndent(full, "", " ")
		if err := os.WriteFile(*report, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "sessionload verify: %v\n", err)
			return 1
		}
	}
	printJSON(stdout, sum)
	if sum.Lost > 0 || sum.Unverified > 0 {
		return 1
	}
	return 0
}
