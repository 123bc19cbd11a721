//go:build e2e

// Package e2e runs the operator on a real single-node Kubernetes cluster: the Helm chart
// installed, the samples applied with the reference session app, pods booting Redis and
// Sentinel from the operator's scripts, a primary deleted and then killed, the store's
// day-2 operations under writes (a rollout, scaling, every pod lost at once, claim
// growth), the operator restarted, a SessionCluster deleted, the chart uninstalled.
//
//	make test-e2e                               # cluster up, run, cluster down
//	E2E_KEEP_CLUSTER=1 make test-e2e            # leave the cluster running afterwards
//	KUBECONFIG=... make test-e2e                # use that cluster (images must be there,
//	                                            # or be loadable by hack/local-cluster.sh)
//
// Without KUBECONFIG it brings up hack/local-cluster.sh's cluster (kind when Docker works,
// else the local node built from sources), builds the operator, the reference app and a
// client image as OCI tarballs, and loads them; a cluster it started it stops at the end,
// one that was already up stays up. It writes bin/results/e2e.json, each failover's
// server, Sentinel and operator logs in bin/results/e2e-logs/ and, on a failure,
// bin/results/e2e-dump/ (events, pods, pod logs, operator logs).
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Settings, each overridable from the environment.
var (
	operatorImage = envOr("IMG", "ghcr.io/sessionops/session-operator:dev")
	appImage      = envOr("APP_IMG", "ghcr.io/sessionops/session-app:dev")
	storeImage    = envOr("E2E_STORE_IMAGE", "docker.io/library/session-redis:7.0")
	clientImage   = envOr("E2E_CLIENT_IMAGE", "docker.io/library/session-e2e-client:dev")
	// The namespace the chart goes to, and the release name.
	operatorNS = envOr("E2E_OPERATOR_NAMESPACE", "session-system")
	release    = envOr("E2E_RELEASE", "session-operator")
)

const (
	nsStore     = "e2e-store"
	nsSticky    = "e2e-sticky"
	nsClustered = "e2e-clustered"
	clientPod   = "e2e-client"
	// leaseName is the manager's leader election ID (internal/manager).
	leaseName = "session-operator.session.sessionops.dev"
)

// env is what every step shares.
type env struct {
	root       string // repository root
	kubeconfig string
	kubectl    string
	helm       string
	cluster    string // local | kind | kubeconfig
	ownCluster bool   // this run brought the cluster up (and takes it down)
	canLoad    bool   // hack/local-cluster.sh load reaches the cluster
	cfg        *rest.Config
	c          client.Client

	mu      sync.Mutex
	res     *results
	dumped  bool
	started time.Time
}

var e *env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e = &env{root: root, started: start, res: newResults()}
	// What an earlier run left must not pass for this run's.
	for _, p := range []string{"bin/results/e2e.json", "bin/results/e2e-dump", "bin/results/e2e-logs"} {
		_ = os.RemoveAll(filepath.Join(root, p))
	}
	code := 0
	if err := e.setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		e.res.fail("setup", err.Error())
		if e.c != nil {
			e.dump("setup")
		}
		code = 1
	} else {
		e.res.SetupSeconds = secs(time.Since(start))
		rc := startRecap()
		code = m.Run()
		rc.finish(code != 0)
	}
	e.res.TotalSeconds = secs(time.Since(start))
	e.res.Passed = code == 0 && len(e.res.FailedSteps) == 0
	if err := e.res.write(filepath.Join(root, "bin/results/e2e.json")); err != nil {
		fmt.Fprintf(os.Stderr, "writing results: %v\n", err)
	}
	e.teardown()
	return code
}

func (e *env) setup() error {
	e.kubectl = firstExecutable(filepath.Join(e.root, "bin/k8s/1.37.2/kubectl"), "kubectl")
	e.kubeconfig = os.Getenv("KUBECONFIG")
	if e.kubeconfig == "" {
		// A cluster that already runs (make demo, an earlier E2E_KEEP_CLUSTER=1) is used
		// and left running; one this run starts, it stops.
		running := e.sh(io.Discard, "hack/local-cluster.sh", "status") == nil
		logf("bringing the cluster up: hack/local-cluster.sh up")
		t0 := time.Now()
		if err := e.sh(os.Stderr, "hack/local-cluster.sh", "up"); err != nil {
			e.ownCluster = !running // a half-made cluster is taken down too
			return fmt.Errorf("hack/local-cluster.sh up: %w", err)
		}
		e.res.ClusterUpSeconds = secs(time.Since(t0))
		e.ownCluster = !running
		e.kubeconfig = filepath.Join(e.root, "bin/cluster/kubeconfig")
		e.kubectl = firstExecutable(filepath.Join(e.root, "bin/k8s/1.37.2/kubectl"), "kubectl")
	}
	if e.kubectl == "" {
		return errors.New("no kubectl: neither bin/k8s/1.37.2/kubectl nor one on PATH")
	}
	os.Setenv("KUBECONFIG", e.kubeconfig)
	e.cluster = "kubeconfig"
	if err := e.sh(io.Discard, "hack/local-cluster.sh", "status"); err == nil {
		e.canLoad = true
		e.cluster = "local"
		if strings.EqualFold(os.Getenv("LOCAL_CLUSTER"), "kind") || (os.Getenv("LOCAL_CLUSTER") == "" && dockerWorks()) {
			e.cluster = "kind"
		}
	}
	if v := os.Getenv("E2E_LOAD_IMAGES"); v != "" {
		e.canLoad = v == "1" || v == "true"
	}
	e.res.Cluster = e.cluster

	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", e.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	e.cfg = cfg
	sch := clientgoscheme.Scheme
	if err := sessionv1.AddToScheme(sch); err != nil {
		return err
	}
	if e.c, err = client.New(cfg, client.Options{Scheme: sch}); err != nil {
		return err
	}
	if out, err := e.kc("version", "-o", "json"); err == nil {
		var v struct {
			ServerVersion struct{ GitVersion string } `json:"serverVersion"`
		}
		if json.Unmarshal([]byte(out), &v) == nil {
			e.res.KubernetesVersion = v.ServerVersion.GitVersion
		}
	}

	t0 := time.Now()
	if err := e.buildImages(); err != nil {
		return err
	}
	e.res.ImagesSeconds = secs(time.Since(t0))

	// Leftovers of an earlier run on a reused cluster.
	if err := e.cleanNamespaces(3 * time.Minute); err != nil {
		return err
	}
	t0 = time.Now()
	if err := e.installChart(); err != nil {
		return err
	}
	e.res.InstallSeconds = secs(time.Since(t0))
	return nil
}

// buildImages builds the operator, the reference app, the Tomcat example and the client as
// OCI tarballs and loads them, with the install-paths targets (make image-tar
// app-image-tar tomcat-image-tar helm).
func (e *env) buildImages() error {
	// tomcat-image-tar installs Debian's tomcat10 and openjdk-17 packages when missing.
	logf("building images: make image-tar app-image-tar tomcat-image-tar helm")
	if err := e.sh(os.Stderr, "make", "--no-print-directory", "image-tar", "app-image-tar", "tomcat-image-tar", "helm",
		"IMG="+operatorImage, "APP_IMG="+appImage, "TOMCAT_IMG="+tomcatImage); err != nil {
		return fmt.Errorf("make image-tar app-image-tar tomcat-image-tar helm: %w", err)
	}
	e.helm = filepath.Join(e.root, "bin/tools/helm")
	// The client pod: sessionload, and the local cluster's pause binary to keep the pod
	// alive without a shell. No busybox needed, so the image builds anywhere.
	dir := filepath.Join(e.root, "bin/e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if err := e.run(os.Stderr, env, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "pause"), "./hack/images/pause"); err != nil {
		return err
	}
	clientTar := filepath.Join(e.root, "bin/images/e2e-client.tar")
	if err := e.run(os.Stderr, env, "go", "run", "./hack/imagetar", "--name", clientImage, "--out", clientTar,
		"--file", filepath.Join(e.root, "bin/images/session-app/sessionload")+":/sessionload:0755",
		"--file", filepath.Join(dir, "pause")+":/pause:0755",
		"--mkdir", "/work:1777", "--user", "65532:65532", "--workdir", "/work", "--entrypoint", "/pause"); err != nil {
		return fmt.Errorf("client image: %w", err)
	}
	if !e.canLoad {
		logf("not loading images: the cluster in KUBECONFIG is not hack/local-cluster.sh's (set E2E_LOAD_IMAGES=1 to force)")
		return nil
	}
	tars := []string{
		filepath.Join(e.root, "bin/images/session-operator.tar"),
		filepath.Join(e.root, "bin/images/session-app.tar"),
		filepath.Join(e.root, "bin/images/session-tomcat.tar"),
		clientTar,
	}
	// The local cluster imports its own images (pause, CoreDNS, session-redis) at every up;
	// load the Redis image again in case the cluster was brought up by someone else.
	if redis := filepath.Join(e.root, "bin/cluster/images/session-redis.tar"); fileExists(redis) && e.cluster == "kind" {
		tars = append(tars, redis)
	}
	logf("loading images into the cluster")
	return e.sh(os.Stderr, append([]string{"hack/local-cluster.sh", "load"}, tars...)...)
}

func (e *env) installChart() error {
	ctx := context.Background()
	// The release namespace enforces the restricted Pod Security Standard too: the chart's
	// own pod must meet it.
	if err := e.ensureNamespace(ctx, operatorNS); err != nil {
		return err
	}
	repo, tag := splitImage(operatorImage)
	logf("installing the chart: helm upgrade --install %s charts/session-operator -n %s", release, operatorNS)
	return e.run(os.Stderr, nil, e.helm, "upgrade", "--install", release, filepath.Join(e.root, "charts/session-operator"),
		"--namespace", operatorNS, "--kubeconfig", e.kubeconfig,
		"--set", "image.repository="+repo, "--set", "image.tag="+tag, "--set", "image.pullPolicy=IfNotPresent",
		"--wait", "--timeout", "5m")
}

func (e *env) teardown() {
	if !e.ownCluster {
		if e.kubeconfig == filepath.Join(e.root, "bin/cluster/kubeconfig") {
			logf("the cluster was up before this run and stays up (hack/local-cluster.sh down removes it)")
		}
		return
	}
	if v := os.Getenv("E2E_KEEP_CLUSTER"); v == "1" || v == "true" {
		logf("E2E_KEEP_CLUSTER set: the cluster stays up (hack/local-cluster.sh down removes it); KUBECONFIG=%s", e.kubeconfig)
		return
	}
	logf("bringing the cluster down: hack/local-cluster.sh down")
	if err := e.sh(os.Stderr, "hack/local-cluster.sh", "down"); err != nil {
		logf("hack/local-cluster.sh down: %v", err)
	}
}

// ensureNamespace creates ns (or keeps it) labelled to enforce the restricted Pod Security
// Standard.
func (e *env) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{}
	err := e.c.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: restrictedLabels()}}
		return e.c.Create(ctx, ns)
	}
	if err != nil {
		return err
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range restrictedLabels() {
		ns.Labels[k] = v
	}
	return e.c.Update(ctx, ns)
}

func restrictedLabels() map[string]string {
	return map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
		"pod-security.kubernetes.io/audit":   "restricted",
	}
}

// cleanNamespaces deletes the test namespaces of an earlier run and waits until they are
// gone.
func (e *env) cleanNamespaces(timeout time.Duration) error {
	ctx := context.Background()
	var left []string
	for _, name := range []string{nsStore, nsSticky, nsClustered, nsTomcat, nsRouting, nsByo, nsCluster} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		err := e.c.Delete(ctx, ns)
		if err == nil || !apierrors.IsNotFound(err) {
			left = append(left, name)
		}
	}
	if len(left) == 0 {
		return nil
	}
	logf("deleting namespaces %v", left)
	return poll(timeout, time.Second, func() (bool, error) {
		for _, name := range left {
			err := e.c.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	})
}

// ---------------------------------------------------------------- processes -----

// sh runs a command from the repository root, its output to w.
func (e *env) sh(w io.Writer, args ...string) error { return e.run(w, nil, args[0], args[1:]...) }

func (e *env) run(w io.Writer, environ []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = e.root
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = w, w
	return cmd.Run()
}

// kc runs kubectl and returns its stdout; stderr joins the error.
func (e *env) kc(args ...string) (string, error) {
	return e.kcCtx(context.Background(), args...)
}

func (e *env) kcCtx(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.kubectl, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	cmd.Dir = e.root
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func dockerWorks() bool {
	if _, err := exec.LookPath("kind"); err != nil {
		return false
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return false
	}
	return exec.Command("docker", "info").Run() == nil
}

// ---------------------------------------------------------------- small helpers --

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s e2e: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func firstExecutable(paths ...string) string {
	for _, p := range paths {
		if strings.Contains(p, "/") {
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p
			}
			continue
		}
		if lp, err := exec.LookPath(p); err == nil {
			return lp
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// splitImage splits repo[:tag] (a registry port is not a tag).
func splitImage(img string) (string, string) {
	i := strings.LastIndex(img, ":")
	if i < 0 || strings.Contains(img[i:], "/") {
		return img, "latest"
	}
	return img[:i], img[i+1:]
}

func secs(d time.Duration) float64 {
	return float64(d.Round(10*time.Millisecond)) / float64(time.Second)
}

// poll calls f every interval until it returns true or an error, or timeout passes.
func poll(timeout, interval time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := f()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %s: %w", timeout, last)
			}
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(interval)
	}
}
