package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// sessionHeader names the session without a cookie (the app accepts it).
const sessionHeader = "X-Session-Id"

// stateFile is what create writes and run/verify read.
type stateFile struct {
	Version  int            `json:"version"`
	Created  time.Time      `json:"created"`
	URLs     []string       `json:"urls"`
	Sessions []sessionState `json:"sessions"`
}

// sessionState is one session and the highest counter the app acknowledged.
type sessionState struct {
	ID    string `json:"id"`
	Acked int64  `json:"acked"`
	URL   string `json:"url"` // where it was created
}

func readState(path string) (*stateFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// writeState writes atomically (temp file + rename).
func writeState(path string, st *stateFile) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sessionload-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// appClient talks to app instances.
type appClient struct {
	http *http.Client
}

func newAppClient(timeout time.Duration, conns int) *appClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns * 4
	tr.MaxIdleConnsPerHost = conns
	return &appClient{http: &http.Client{Timeout: timeout, Transport: tr}}
}

// appResponse is the app's JSON for /login and /session.
type appResponse struct {
	ID       string `json:"id"`
	Counter  int64  `json:"counter"`
	Instance string `json:"instance"`
}

// result is the outcome of one request: Status 0 means a transport error.
type result struct {
	Status  int
	Body    appResponse
	Err     error
	Latency time.Duration
}

func (c *appClient) do(ctx context.Context, method, url, sid string) result {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return result{Err: err}
	}
	if sid != "" {
		req.Header.Set(sessionHeader, sid)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return result{Err: err, Latency: time.Since(start)}
	}
	defer resp.Body.Close()
	r := result{Status: resp.StatusCode}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r.Latency = time.Since(start)
	if err != nil {
		r.Err = err
		r.Status = 0
		return r
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &r.Body); err != nil {
			r.Err = fmt.Errorf("bad JSON from %s: %w", url, err)
			r.Status = 0
		}
	} else {
		r.Err = fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, truncate(string(body), 200))
	}
	return r
}

func (c *appClient) login(ctx context.Context, base string) result {
	return c.do(ctx, http.MethodPost, base+"/login", "")
}

func (c *appClient) bump(ctx context.Context, base, sid string) result {
	return c.do(ctx, http.MethodGet, base+"/session", sid)
}

func (c *appClient) peek(ctx context.Context, base, sid string) result {
	return c.do(ctx, http.MethodGet, base+"/session?read=1", sid)
}

// retrying repeats a request that failed with a transport error or a 5xx, up to retries
// more times, 500 ms apart, and returns the last result with how many times it repeated.
// A refused connection or a 503 during setup is the network's or the store's moment of
// unavailability, not a lost session; the run command, which measures those, never retries.
func retrying(retries int, do func() result) (result, int) {
	for attempt := 0; ; attempt++ {
		r := do()
		if transient := r.Status == 0 || r.Status >= 500; !transient || attempt >= retries {
			return r, attempt
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// latencyStats summarises request latencies in milliseconds.
type latencyStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		i = min(max(i, 0), len(s)-1)
		return ms(s[i])
	}
	return latencyStats{Count: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// parallelFor calls fn(i) for every i in [0, n) from at most workers goroutines.
func parallelFor(n, workers int, fn func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				fn(i)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}
