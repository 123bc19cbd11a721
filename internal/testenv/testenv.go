// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest)
// for the operator's tests and benchmarks, with the control-plane binaries found or built
// by hack/envtest-assets.sh, so no test is skipped for want of them.
package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error
)

// Assets returns the directory of etcd, kube-apiserver and kubectl, building them once
// when nothing provides them.
func Assets() (string, error) {
	assetsOnce.Do(func() {
		if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
			assetsDir = dir
			return
		}
		cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			assetsErr = fmt.Errorf("hack/envtest-assets.sh: %w", err)
			return
		}
		assetsDir = strings.TrimSpace(string(out))
	})
	return assetsDir, assetsErr
}

// Start runs a control plane with the operator's CRDs (and any extra CRD directories)
// installed.
func Start(extraCRDDirs ...string) (*envtest.Environment, *rest.Config, error) {
	assets, err := Assets()
	if err != nil {
		return nil, nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(RepoRoot(), "config", "crd", "bases")}, extraCRDDirs...),
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	// The default /24 holds 254 ClusterIPs; the scale benchmark makes thousands of Services.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest with assets in %s: %w", assets, err)
	}
	return env, cfg, nil
}

// Counter counts the API requests made through a rest.Config, split into reads and writes.
type Counter struct {
	reads, writes atomic.Int64
	mu            sync.Mutex
	log           []string
	keepLog       bool
}

// Counting returns a copy of cfg whose requests c counts.
func (c *Counter) Counting(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			c.count(req)
			return rt.RoundTrip(req)
		})
	})
	return out
}

func (c *Counter) count(req *http.Request) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		// Watches are long-lived GETs; they are reads too.
		c.reads.Add(1)
	default:
		c.writes.Add(1)
		c.mu.Lock()
		if c.keepLog {
			c.log = append(c.log, req.Method+" "+req.URL.Path)
		}
		c.mu.Unlock()
	}
}

// Reads and Writes are the counts so far.
func (c *Counter) Reads() int64  { return c.reads.Load() }
func (c *Counter) Writes() int64 { return c.writes.Load() }

// KeepLog records each write's method and path, for messages that say what was written.
func (c *Counter) KeepLog() {
	c.mu.Lock()
	c.keepLog = true
	c.mu.Unlock()
}

// WritesSince lists the writes recorded after the n-th.
func (c *Counter) WritesSince(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > len(c.log) {
		return nil
	}
	return append([]string(nil), c.log[n:]...)
}

// LoggedWrites is how many writes the log holds.
func (c *Counter) LoggedWrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.log)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
