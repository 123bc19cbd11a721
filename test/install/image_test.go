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

	// The build context: what the build stage COPYs, without tests and testdata
	// (.dockerignore leaves those out too).
	ctxDir := t.TempDir()
	copies := regexp.MustCompile(`(?m)^COPY\s+([^-\n][^\n]*)$`).FindAllStringSubmatch(text, -1)
	n := 0
	for _, c := range copies {
		f := strings.Fields(c[1])
		for _, src := range f[:len(f)-1] {
			if err := copyTree(filepath.Join(root, src), filepath.Join(ctxDir, src)); err != nil {
				t.Fatalf("COPY %s: %v", src, err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("the Dockerfile copies nothing")
	}
	bin := filepath.Join(t.TempDir(), "session-operator")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = ctxDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build context does not build: %v\n%s", err, out)
	}
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

// runManager starts the manager binary with args against the envtest apiserver, on free
// ports and without leader election (which needs an in-cluster namespace), and waits for
// /readyz and for /metrics to serve controller-runtime's and the operator's series.
func runManager(t *testing.T, bin string, args []string) {
	t.Helper()
	metricsPort, healthPort := freePort(t), freePort(t)
	var run []string
	for _, a := range args {
		switch {
		case a == "--leader-elect":
		case strings.HasPrefix(a, "--metrics-bind-address="):
			run = append(run, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort))
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			run = append(run, fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort))
		default:
			run = append(run, a)
		}
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, run...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+dir)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	get := func(port int, path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the manager exited with %v; args %v\n%s", err, run, logs.String())
		default:
		}
		if code, _ := get(healthPort, "/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager was not ready within 90s; args %v\n%s", run, logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if code, _ := get(healthPort, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz answered %d", code)
	}
	code, body := get(metricsPort, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
		t.Errorf("/metrics answered %d without controller-runtime's series:\n%.2000s", code, body)
	}
	if strings.Contains(logs.String(), "flag provided but not defined") {
		t.Errorf("the manager refused a flag:\n%s", logs.String())
	}
}

func writeKubeconfig(path string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
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
