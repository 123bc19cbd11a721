package install

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestDockerfile checks the Dockerfile's promises as text (no daemon runs here), then
// builds the manager from exactly what its build stage copies, the way it builds it, and
// checks the binary is static. The binary is then started with the chart's arguments
// against the envtest apiserver and must become ready and serve metrics.
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	for _, want := range []string{"CGO_ENABLED=0", "\nUSER 65532:65532\n", `ENTRYPOINT ["/session-operator"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile lacks %q", strings.TrimSpace(want))
		}
	}
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(stages) < 2 {
		t.Fatalf("the Dockerfile is not multi-stage: %v", stages)
	}
	if base := stages[len(stages)-1][1]; base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("the final stage is FROM %s, want scratch or distroless static", base)
	}
	mk, err := os.ReadFile(filepath.Join(root, "hack", "chart.mk"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "--user 65532:65532 --entrypoint /$(1)") {
		t.Error("make image-tar no longer builds the Dockerfile's user and entrypoint")
	}

	bin := managerBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the manager binary is dynamically linked (%v)", p.Type)
		}
	}
	f.Close()

	for _, tc := range []struct {
		name  string
		args  []string
		watch []string
	}{
		{"all namespaces", nil, nil},
		{"namespace list", []string{"--set", "watchNamespaces={run-a,run-b}"}, []string{"run-a", "run-b"}},
	} {
		t.Run("starts with the chart's arguments, "+tc.name, func(t *testing.T) {
			for _, ns := range tc.watch {
				ensureNamespace(t, ns)
			}
			objs := helmTemplate(t, "session-operator", "session-system", tc.args...)
			args := containerArgs(t, must(t, objs, "Deployment", "session-system", "session-operator"))
			runManager(t, bin, args)
		})
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string // removed by TestMain
)

// managerBinary builds the manager once from exactly what the Dockerfile's build stage
// COPYs, without tests and testdata (.dockerignore leaves those out too), the way it
// builds it: static, trimmed paths.
func managerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath, binErr = buildFromDockerContext()
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func buildFromDockerContext() (string, error) {
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return "", err
	}
	if binDir, err = os.MkdirTemp("", "install-test-"); err != nil {
		return "", err
	}
	ctxDir := filepath.Join(binDir, "context")
	n := 0
	for _, c := range regexp.MustCompile(`(?m)^COPY\s+([^-\n][^\n]*)$`).FindAllStringSubmatch(string(df), -1) {
		f := strings.Fields(c[1])
		for _, src := range f[:len(f)-1] {
			if err := copyTree(filepath.Join(root, src), filepath.Join(ctxDir, src)); err != nil {
				return "", fmt.Errorf("COPY %s: %w", src, err)
			}
			n++
		}
	}
	if n == 0 {
		return "", fmt.Errorf("the Dockerfile copies nothing")
	}
	bin := filepath.Join(binDir, "session-operator")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = ctxDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("the Dockerfile's build context does not build: %v\n%s", err, out)
	}
	return bin, nil
}

// manager is a running manager process.
type manager struct {
	args                    []string
	logs                    *syncBuffer
	metricsPort, healthPort int
	exited                  chan error
}

// startManager starts the manager binary with args against the envtest apiserver, as the
// user impersonate when not empty, on free ports and without leader election (which needs
// an in-cluster namespace), and waits for /readyz. The test's cleanup stops it.
func startManager(t *testing.T, bin string, args []string, impersonate string) *manager {
	t.Helper()
	m := &manager{logs: &syncBuffer{}, metricsPort: freePort(t), healthPort: freePort(t), exited: make(chan error, 1)}
	for _, a := range args {
		switch {
		case a == "--leader-elect":
		case strings.HasPrefix(a, "--metrics-bind-address="):
			m.args = append(m.args, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", m.metricsPort))
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			m.args = append(m.args, fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", m.healthPort))
		default:
			m.args = append(m.args, a)
		}
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, impersonate); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, m.args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+dir)
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-m.exited
		}
	})
	m.waitFor(t, 90*time.Second, "/readyz to answer 200", func() bool {
		code, _ := m.get(m.healthPort, "/readyz")
		return code == http.StatusOK
	})
	return m
}

func (m *manager) get(port int, path string) (int, string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds, failing the test when the manager exits first or
// the time is up.
func (m *manager) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-m.exited:
			m.exited <- err
			t.Fatalf("the manager exited with %v while waiting for %s; args %v\n%s", err, what, m.args, m.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s; args %v\n%s", what, timeout, m.args, m.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runManager starts the manager with the chart's arguments and checks its probes and
// metrics endpoints answer, and that it refused no flag.
func runManager(t *testing.T, bin string, args []string) {
	t.Helper()
	m := startManager(t, bin, args, "")
	if code, _ := m.get(m.healthPort, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz answered %d", code)
	}
	// /readyz answers before the controller starts (once its caches have synced, which
	// takes longer on a busy machine); its series appear then.
	m.waitFor(t, 60*time.Second, "controller-runtime's series on /metrics", func() bool {
		code, body := m.get(m.metricsPort, "/metrics")
		return code == http.StatusOK && strings.Contains(body, "controller_runtime_reconcile_total")
	})
	if strings.Contains(m.logs.String(), "flag provided but not defined") {
		t.Errorf("the manager refused a flag:\n%s", m.logs.String())
	}
}

// writeKubeconfig writes a kubeconfig for the envtest apiserver's admin, impersonating
// the user impersonate when not empty.
func writeKubeconfig(path, impersonate string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
		Impersonate: impersonate,
	}
	c.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	c.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*c, path)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// copyTree copies a file or directory, leaving out Go tests and testdata.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "testdata" {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			return nil
		}
		r, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, r)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// syncBuffer is a bytes.Buffer safe for a process's output and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is the last 200 lines, enough for a failure message.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 200 {
		lines = lines[len(lines)-200:]
	}
	return strings.Join(lines, "\n")
}
