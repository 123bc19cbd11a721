//go:build datapath

package datapath

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// TestDay2ExpressSession runs a real, unmodified express-session + connect-redis (ioredis,
// following Sentinel) from npm, configured only from the rendered wiring: the app's user
// confined to connect-redis' "sess:" prefix, its password, the Sentinels. Two instances
// share one session.
func TestDay2ExpressSession(t *testing.T) {
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("missing %s (Debian: apt-get install -y nodejs npm)", bin)
		}
	}
	c := newCluster(t, func(sc *sessionv1.SessionCluster) { sc.Spec.Apps[0].KeyPrefix = "sess:" })

	// The app, installed from the npm registry into the run directory.
	dir := filepath.Join(c.root, "expressapp")
	must(t, os.MkdirAll(dir, 0o755))
	src := filepath.Join(repoRoot(t), "test", "datapath", "expressapp")
	for _, f := range []string{"package.json", "server.js"} {
		raw, err := os.ReadFile(filepath.Join(src, f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, f), raw, 0o644))
	}
	npm := exec.Command("npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error")
	npm.Dir = dir
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, out)
	}

	c.startStore()
	primary, err := c.sentinelsPrimary()
	must(t, err)
	must(t, c.waitSettled(primary, 60*time.Second))

	dep, err := findObject[*appsv1.Deployment](c.desired, c.names.App(appName))
	must(t, err)
	var urls []string
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("express-%d", i)
		env, err := c.resolveEnv(dep.Spec.Template.Spec.Containers[0].Env, name, "127.0.0.1", nil)
		must(t, err)
		port := freePort(t)
		env = setEnv(env, "PORT", strconv.Itoa(port))
		env = append(env, "SESSION_SECRET=the-apps-own-cookie-secret")
		p := &pod{name: name, kind: "app", addr: "127.0.0.1:" + strconv.Itoa(port),
			argv: []string{"node", filepath.Join(dir, "server.js")}, env: env, logPath: filepath.Join(dir, name+".log")}
		c.apps = append(c.apps, p)
		c.start(p)
		waitHTTP(t, c, p, "/healthz")
		urls = append(urls, p.url())
	}

	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	// The cookie is set for 127.0.0.1 whatever the port, so both instances see it.
	var id string
	var n float64
	call := func(method, url string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			c.dumpLogs()
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, body)
		}
		var r struct {
			ID string  `json:"id"`
			N  float64 `json:"n"`
		}
		must(t, json.Unmarshal(body, &r))
		id, n = r.ID, r.N
	}
	call(http.MethodPost, urls[0]+"/login")
	for i := 1; i <= 6; i++ {
		call(http.MethodGet, urls[i%2]+"/bump")
		if int(n) != i {
			t.Fatalf("bump %d through %s: counter %v", i, urls[i%2], n)
		}
	}
	// The session is where connect-redis puts it, with its TTL.
	r := c.redisClient(c.redisPod(primary))
	defer r.Close()
	ctx := context.Background()
	val, err := r.Get(ctx, "sess:"+id).Result()
	if err != nil || !strings.Contains(val, `"n":6`) {
		t.Fatalf("sess:%s = %q, %v", id, val, err)
	}
	if ttl, err := r.TTL(ctx, "sess:"+id).Result(); err != nil || ttl <= 0 {
		t.Errorf("session TTL %v %v", ttl, err)
	}
	t.Logf("express-session + connect-redis: one session over 2 instances, counter 6, stored as sess:%s", id[:8])
}

func waitHTTP(t *testing.T, c *cluster, p *pod, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url() + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.proc.running() || time.Now().After(deadline) {
			c.dumpLogs()
			t.Fatalf("%s not ready: %v", p.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
