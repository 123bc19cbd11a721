//go:build datapath

package datapath

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

// repoRoot is the operator's module root (where go.mod is).
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	must(t, err)
	for {
		if raw, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.Contains(raw, []byte("module github.com/sessionops/session-operator\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("operator module root not found above the working directory")
		}
		dir = parent
	}
}

// buildApp builds the reference app from examples/session-app.
func (c *cluster) buildApp() {
	c.t.Helper()
	out := filepath.Join(c.root, "session-app")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(repoRoot(c.t), "examples", "session-app")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("building examples/session-app: %v\n%s", err, b)
	}
	c.appBinary = out
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// addApps prepares n instances of the rendered app Deployment: the container's env,
// resolved as the kubelet would, with PORT distinct per instance. extra are app-local
// knobs (not part of the wiring contract), e.g. SESSION_PAD_BYTES for the benchmark.
func (c *cluster) addApps(n int, extra ...string) {
	c.t.Helper()
	if c.appBinary == "" {
		c.buildApp()
	}
	dep, err := findObject[*appsv1.Deployment](c.desired, c.names.App(appName))
	if err != nil {
		c.t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", c.names.App(appName), len(c.apps))
		env, err := c.resolveEnv(ctr.Env, name, "127.0.0.1", nil)
		if err != nil {
			c.t.Fatalf("%s: %v", name, err)
		}
		port := freePort(c.t)
		env = setEnv(env, "PORT", strconv.Itoa(port))
		env = append(env, extra...)
		dir := filepath.Join(c.root, name)
		must(c.t, os.MkdirAll(dir, 0o700))
		p := &pod{name: name, kind: "app", container: ctr, addr: "127.0.0.1:" + strconv.Itoa(port),
			argv: append([]string{c.appBinary}, ctr.Args...), env: env, logPath: filepath.Join(dir, "log")}
		c.apps = append(c.apps, p)
	}
}

func (p *pod) url() string { return "http://" + p.addr }

// startApp starts an app instance and waits for /readyz.
func (c *cluster) startApp(p *pod) {
	c.t.Helper()
	c.start(p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.proc.running() || time.Now().After(deadline) {
			c.dumpLogs()
			c.t.Fatalf("%s not ready: %v", p.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cluster) appURLs(skip ...*pod) []string {
	var out []string
next:
	for _, p := range c.apps {
		for _, s := range skip {
			if s == p {
				continue next
			}
		}
		if p.proc != nil && p.proc.running() {
			out = append(out, p.url())
		}
	}
	return out
}

// client talks to app instances over HTTP, naming sessions by the X-Session-Id header.
type appClient struct{ http *http.Client }

func newClient(conns int, timeout time.Duration) *appClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns * 4
	tr.MaxIdleConnsPerHost = conns
	return &appClient{http: &http.Client{Timeout: timeout, Transport: tr}}
}

type sessionReply struct {
	ID       string `json:"id"`
	Counter  int64  `json:"counter"`
	Instance string `json:"instance"`
}

var errUnknown = errors.New("unknown session (401)")

// call does one request: the reply on 200, errUnknown on 401, an error otherwise.
func (cl *appClient) call(ctx context.Context, method, url, id string) (sessionReply, int, error) {
	var r sessionReply
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return r, 0, err
	}
	if id != "" {
		req.Header.Set("X-Session-Id", id)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return r, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(body, &r); err != nil {
			return r, resp.StatusCode, fmt.Errorf("bad reply %q: %w", body, err)
		}
		return r, resp.StatusCode, nil
	case http.StatusUnauthorized:
		return r, resp.StatusCode, errUnknown
	default:
		return r, resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
}

func (cl *appClient) login(ctx context.Context, base string) (sessionReply, int, error) {
	return cl.call(ctx, http.MethodPost, base+"/login", "")
}

func (cl *appClient) bump(ctx context.Context, base, id string) (sessionReply, int, error) {
	return cl.call(ctx, http.MethodGet, base+"/session", id)
}

func (cl *appClient) peek(ctx context.Context, base, id string) (sessionReply, int, error) {
	return cl.call(ctx, http.MethodGet, base+"/session?read=1", id)
}
