package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

// event is one request's outcome, written as a JSON line with -events.
type event struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Client    int       `json:"client"`
	Op        string    `json:"op"`
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Status    int       `json:"status"` // 0: transport error
	OK        bool      `json:"ok"`
	Counter   int64     `json:"counter,omitempty"`
	PrevAcked int64     `json:"prev_acked"`
	LatencyMS float64   `json:"latency_ms"`
	Err       string    `json:"err,omitempty"`
}

// outage is a stretch without any successful request: from the completion of
// the last success before a failure to the completion of the next success.
type outage struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Seconds  float64   `json:"seconds"`
	Failures int       `json:"failures"`
}

type runSummary struct {
	Command         string         `json:"command"`
	Op              string         `json:"op"`
	Clients         int            `json:"clients"`
	Sessions        int            `json:"sessions"`
	DurationSeconds float64        `json:"duration_seconds"`
	Requests        int            `json:"requests"`
	OK              int            `json:"ok"`
	Failed          int            `json:"failed"`
	Status          map[string]int `json:"status"`
	OKPerSecond     float64        `json:"ok_per_second"`
	LatencyOK       latencyStats   `json:"latency_ok"`
	LatencyAll      latencyStats   `json:"latency_all"`
	// Acknowledged data seen lost while running: a 200 whose counter is not
	// above (bump) or below (peek) the last acknowledged one, or a 401.
	WentBackwards   int      `json:"went_backwards"`
	UnknownSessions int      `json:"unknown_sessions"`
	MaxGapSeconds   float64  `json:"max_gap_seconds"`
	Outages         []outage `json:"outages"`
	Out             string   `json:"out"`
	FirstError      string   `json:"first_error,omitempty"`
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "send continuous session traffic for a while from several clients, "+
		"record every request's outcome, keep the highest acknowledged counter per session, "+
		"and report throughput, latency and outages (stretches with no successful request)", stderr)
	urlsFlag := fs.String("urls", "", "comma-separated app base URLs; requests rotate over them (required)")
	in := fs.String("in", "sessions.json", "state file from create")
	out := fs.String("out", "", "state file to write with updated acknowledged counters (default: -in)")
	duration := fs.Duration("duration", 10*time.Second, "how long to run (the run always stops by itself)")
	maxRequests := fs.Int("requests", 0, "stop after this many requests in total (0: only -duration)")
	clients := fs.Int("clients", 4, "parallel clients; each owns a disjoint share of the sessions, so writes to one session are sequential")
	op := fs.String("op", "bump", "bump (GET /session, a write) or peek (GET /session?read=1, a read)")
	sticky := fs.Bool("sticky", false, "send each session's requests to the URL that created it instead of rotating")
	interval := fs.Duration("interval", 0, "pause between a client's requests")
	eventsPath := fs.String("events", "", "write every request's outcome to this file as JSON lines")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	urls, err := parseURLs(*urlsFlag)
	if err == nil && (*op != "bump" && *op != "peek") {
		err = fmt.Errorf("-op must be bump or peek")
	}
	if err == nil && (*clients < 1 || *duration <= 0) {
		err = fmt.Errorf("-clients must be at least 1 and -duration positive")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionload run: %v\n", err)
		return 2
	}
	st, err := readState(*in)
	if err != nil {
		fmt.Fprintf(stderr, "sessionload run: %v\n", err)
		return 2
	}
	if len(st.Sessions) == 0 {
		fmt.Fprintf(stderr, "sessionload run: %s holds no sessions\n", *in)
		return 2
	}
	if *out == "" {
		*out = *in
	}
	*clients = min(*clients, len(st.Sessions))

	c := newAppClient(*timeout, *clients)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var budget chan struct{}
	if *maxRequests > 0 {
		budget = make(chan struct{}, *maxRequests)
		for i := 0; i < *maxRequests; i++ {
			budget <- struct{}{}
		}
		close(budget)
	}

	start := time.Now()
	perClient := make([][]event, *clients)
	var wg sync.WaitGroup
	for k := 0; k < *clients; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			var mine []*sessionState
			for i := k; i < len(st.Sessions); i += *clients {
				mine = append(mine, &st.Sessions[i])
			}
			for n := 0; ctx.Err() == nil; n++ {
				if budget != nil {
					if _, ok := <-budget; !ok {
						return
					}
				}
				s := mine[n%len(mine)]
				base := urls[(n+k)%len(urls)]
				if *sticky && s.URL != "" {
					base = s.URL
				}
				e := event{Start: time.Now(), Client: k, Op: *op, ID: s.ID, URL: base, PrevAcked: s.Acked}
				// The request gets its own timeout, not the run's deadline, so a
				// write in flight at the end is seen through rather than abandoned.
				var r result
				if *op == "bump" {
					r = c.bump(context.Background(), base, s.ID)
				} else {
					r = c.peek(context.Background(), base, s.ID)
				}
				e.End, e.Status, e.LatencyMS = time.Now(), r.Status, ms(r.Latency)
				if r.Err != nil {
					e.Err = r.Err.Error()
				} else {
					e.OK, e.Counter = true, r.Body.Counter
					s.Acked = max(s.Acked, r.Body.Counter)
				}
				perClient[k] = append(perClient[k], e)
				if *interval > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(*interval):
					}
				}
			}
		}(k)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var events []event
	for _, es := range perClient {
		events = append(events, es...)
	}
	sort.Slice(events, func(i, j int) bool { return events[i].End.Before(events[j].End) })
	sum := summarizeRun(events, start, time.Now())
	sum.Command, sum.Op, sum.Clients, sum.Sessions, sum.Out = "run", *op, *clients, len(st.Sessions), *out
	sum.DurationSeconds = elapsed.Seconds()
	sum.OKPerSecond = float64(sum.OK) / elapsed.Seconds()

	if *eventsPath != "" {
		if err := writeEvents(*eventsPath, events); err != nil {
			fmt.Fprintf(stderr, "sessionload run: %v\n", err)
			return 1
		}
	}
	if err := writeState(*out, st); err != nil {
		fmt.Fprintf(stderr, "sessionload run: %v\n", err)
		return 1
	}
	printJSON(stdout, sum)
	if sum.WentBackwards > 0 || sum.UnknownSessions > 0 {
		return 1
	}
	return 0
}

// summarizeRun counts outcomes and finds the outages. events are sorted by End.
func summarizeRun(events []event, start, end time.Time) runSummary {
	sum := runSummary{Status: map[string]int{}, Outages: []outage{}}
	var okLat, allLat []time.Duration
	lastOK := start
	var open *outage
	for _, e := range events {
		sum.Requests++
		lat := time.Duration(e.LatencyMS * float64(time.Millisecond))
		allLat = append(allLat, lat)
		key := strconv.Itoa(e.Status)
		if e.Status == 0 {
			key = "error"
		}
		sum.Status[key]++
		if e.Status == 401 {
			sum.UnknownSessions++
		}
		if !e.OK {
			sum.Failed++
			if sum.FirstError == "" {
				sum.FirstError = e.Err
			}
			if open == nil {
				open = &outage{From: lastOK}
			}
			open.Failures++
			continue
		}
		sum.OK++
		okLat = append(okLat, lat)
		if (e.Op == "bump" && e.Counter <= e.PrevAcked) || (e.Op == "peek" && e.Counter < e.PrevAcked) {
			sum.WentBackwards++
		}
		sum.MaxGapSeconds = max(sum.MaxGapSeconds, e.End.Sub(lastOK).Seconds())
		if open != nil {
			open.To = e.End
			open.Seconds = open.To.Sub(open.From).Seconds()
			sum.Outages = append(sum.Outages, *open)
			open = nil
		}
		lastOK = e.End
	}
	if open != nil { // still failing when the run ended
		open.To = end
		open.Seconds = end.Sub(open.From).Seconds()
		sum.Outages = append(sum.Outages, *open)
	}
	sum.MaxGapSeconds = max(sum.MaxGapSeconds, end.Sub(lastOK).Seconds())
	sum.LatencyOK, sum.LatencyAll = summarize(okLat), summarize(allLat)
	return sum
}

func writeEvents(path string, events []event) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
