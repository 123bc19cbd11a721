//go:build datapath

package datapath

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// The SessionCluster the harness runs: a default Store-mode cluster, except a shorter
// down-after, set through the spec, so that a run with several failovers stays short.
const (
	clusterName      = "shop"
	clusterNamespace = "default"
	appName          = "web"
	harnessPassword  = "Dp7-harness-pw-Zq41xR8s" // the app's, as the operator would generate it; never logged
)

// harnessInternal are the internal users' passwords, as the operator would generate them.
var harnessInternal = render.InternalPasswords{
	Operator: "Op7-harness-pw-Kd82nVq3", Replication: "Re7-harness-pw-Lm29xTc5", Sentinel: "Se7-harness-pw-Pw63hZr8",
}

// harnessInputs are the render inputs of a cluster whose every app has harnessPassword.
func harnessInputs(sc *sessionv1.SessionCluster) render.Inputs {
	in := render.Inputs{AppPasswords: map[string]string{}, Internal: harnessInternal}
	for _, a := range sc.Spec.Apps {
		in.AppPasswords[a.Name] = harnessPassword
	}
	return in
}

func downAfter() time.Duration {
	if v := os.Getenv("DATAPATH_DOWN_AFTER"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return 3 * time.Second
}

func sessionCluster(opts ...func(*sessionv1.SessionCluster)) *sessionv1.SessionCluster {
	sc := &sessionv1.SessionCluster{
		TypeMeta:   metav1.TypeMeta{APIVersion: sessionv1.GroupVersion.String(), Kind: "SessionCluster"},
		ObjectMeta: metav1.ObjectMeta{Name: clusterName, Namespace: clusterNamespace, UID: types.UID("datapath-uid")},
		Spec: sessionv1.SessionClusterSpec{
			Mode: sessionv1.ModeStore,
			Apps: []sessionv1.AppSpec{{Name: appName, Image: "ghcr.io/sessionops/session-app:dev"}},
			Store: &sessionv1.StoreSpec{
				Sentinel: sessionv1.SentinelSpec{DownAfter: &metav1.Duration{Duration: downAfter()}},
			},
		},
	}
	for _, o := range opts {
		o(sc)
	}
	return sc
}

// pod is one rendered container run as a local process.
type pod struct {
	name, host, addr string
	kind             string // redis | sentinel | app
	container        corev1.Container
	argv             []string
	env              []string
	readyProbe       *corev1.Probe
	liveProbe        *corev1.Probe
	runDir, dataDir  string
	logPath          string
	proc             *proc
	starts           int
	logOffset        int64 // where the current start's output begins in logPath
}

// cluster is the rendered store, run on loopback.
type cluster struct {
	t         testing.TB
	sc        *sessionv1.SessionCluster
	desired   *render.Desired
	names     render.Names
	root      string
	configDir string
	usersDir  string // the users Secret as the kubelet projects it
	inputs    render.Inputs
	redis     []*pod
	sentinels []*pod
	apps      []*pod
	appBinary string
	hosts     *hostsEdit
	addrs     map[string]string
	secrets   map[string]*corev1.Secret
	downAfter time.Duration
}

func findObject[T client.Object](d *render.Desired, name string) (T, error) {
	for _, o := range d.Objects {
		if v, ok := o.(T); ok && o.GetName() == name {
			return v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("no %T named %s rendered", zero, name)
}

// newCluster renders the SessionCluster, writes its ConfigMap into a per-run directory,
// maps the rendered host names to loopback addresses and prepares (without starting) one
// process per Redis and Sentinel pod.
func newCluster(t testing.TB, opts ...func(*sessionv1.SessionCluster)) *cluster {
	return buildCluster(t, 0, opts...)
}

// newClusterWith is newCluster for a SessionCluster changed by mutate, with host names
// mapped for up to maxServers Redis servers (so that a scale-up has addresses).
func newClusterWith(t testing.TB, mutate func(*sessionv1.SessionCluster), maxServers int) *cluster {
	var opts []func(*sessionv1.SessionCluster)
	if mutate != nil {
		opts = append(opts, mutate)
	}
	return buildCluster(t, maxServers, opts...)
}

func buildCluster(t testing.TB, maxServers int, opts ...func(*sessionv1.SessionCluster)) *cluster {
	t.Helper()
	preflight(t)
	sc := sessionCluster(opts...)
	spec := sc.Spec.WithDefaults()
	c := &cluster{
		t: t, sc: sc, names: render.NamesFor(sc, ""),
		root: runRoot(t), addrs: map[string]string{}, secrets: map[string]*corev1.Secret{},
		downAfter: spec.Store.Sentinel.DownAfter.Duration,
	}
	c.usersDir = filepath.Join(c.root, "users")
	c.rerender(harnessInputs(sc))
	d := c.desired
	n := c.names
	cm, err := findObject[*corev1.ConfigMap](d, n.StoreConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.configDir = filepath.Join(c.root, "config")
	must(t, os.MkdirAll(c.configDir, 0o755))
	for k, v := range cm.Data {
		must(t, os.WriteFile(filepath.Join(c.configDir, k), []byte(v), 0o444))
	}
	storeSet, err := findObject[*appsv1.StatefulSet](d, n.Store())
	if err != nil {
		t.Fatal(err)
	}
	sentinelSet, err := findObject[*appsv1.StatefulSet](d, n.Sentinel())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < int(*storeSet.Spec.Replicas); i++ {
		name := n.StorePod(i)
		c.redis = append(c.redis, c.newStatefulPod("redis", name, name+"."+n.StoreDomain(), fmt.Sprintf("127.0.0.%d", 21+i), storeSet))
	}
	for i := 0; i < int(*sentinelSet.Spec.Replicas); i++ {
		name := n.SentinelPod(i)
		c.sentinels = append(c.sentinels, c.newStatefulPod("sentinel", name, name+"."+n.SentinelDomain(), fmt.Sprintf("127.0.0.%d", 31+i), sentinelSet))
	}
	for _, p := range append(append([]*pod{}, c.redis...), c.sentinels...) {
		c.addrs[p.host] = p.addr
	}
	for i := len(c.redis); i < maxServers; i++ {
		c.addrs[n.StorePod(i)+"."+n.StoreDomain()] = fmt.Sprintf("127.0.0.%d", 21+i)
	}
	c.hosts, err = addHosts("/etc/hosts", c.addrs)
	if err != nil {
		t.Fatalf("mapping host names in /etc/hosts: %v", err)
	}
	setHostsUndo(c.hosts)
	t.Cleanup(func() {
		if err := c.hosts.restore(); err != nil {
			t.Errorf("restoring /etc/hosts: %v", err)
		}
		setHostsUndo(nil)
	})
	t.Cleanup(c.stopAll)
	return c
}

// rerender renders the SessionCluster again with in, keeps its Secrets for resolving env
// (as the apiserver would hold them) and projects the users Secret into usersDir the way
// the kubelet updates a mounted Secret: each file replaced whole.
func (c *cluster) rerender(in render.Inputs) {
	c.t.Helper()
	d, err := render.Render(c.sc, render.Options{}, in)
	if err != nil {
		c.t.Fatalf("render: %v", err)
	}
	c.desired, c.inputs = d, in
	for _, o := range d.Objects {
		if s, ok := o.(*corev1.Secret); ok {
			c.secrets[s.Name] = s
		}
	}
	users, ok := c.secrets[c.names.UsersSecret()]
	if !ok {
		c.t.Fatal("no users secret rendered")
	}
	must(c.t, os.MkdirAll(c.usersDir, 0o700))
	for k, v := range users.Data {
		tmp := filepath.Join(c.usersDir, "."+k+".tmp")
		must(c.t, os.WriteFile(tmp, v, 0o400))
		must(c.t, os.Rename(tmp, filepath.Join(c.usersDir, k)))
	}
}

// preflight fails (never skips) when the machine cannot run the harness, and makes runs
// take turns: they share /etc/hosts and the rendered ports.
func preflight(t testing.TB) {
	t.Helper()
	var missing []string
	for _, bin := range []string{"redis-server", "redis-sentinel", "redis-cli", "redis-benchmark", "timeout", "getent", "sha1sum", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %s; on Debian: apt-get install -y redis-server redis-sentinel redis-tools "+
			"(then stop the services it starts: service redis-server stop; service redis-sentinel stop)", strings.Join(missing, ", "))
	}
	if f, err := os.OpenFile("/etc/hosts", os.O_WRONLY, 0); err != nil {
		t.Fatalf("the harness maps the rendered host names in /etc/hosts and must be able to write it (run as root): %v", err)
	} else {
		f.Close()
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "session-operator-datapath.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("another data-path run holds %s: waiting for it", lock.Name())
		must(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	}
	t.Cleanup(func() { lock.Close() })
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runRoot is a fresh directory for this run; kept after a failure for the logs.
func runRoot(t testing.TB) string {
	dir, err := os.MkdirTemp("", "datapath-")
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("DATAPATH_KEEP") != "" {
			t.Logf("run directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func (c *cluster) newStatefulPod(kind, name, host, addr string, sts *appsv1.StatefulSet) *pod {
	ctr := sts.Spec.Template.Spec.Containers[0]
	p := &pod{name: name, host: host, addr: addr, kind: kind, container: ctr,
		readyProbe: ctr.ReadinessProbe, liveProbe: ctr.LivenessProbe}
	dir := filepath.Join(c.root, name)
	p.runDir, p.dataDir = filepath.Join(dir, "run"), filepath.Join(dir, "data")
	p.logPath = filepath.Join(dir, "log")
	must(c.t, os.MkdirAll(p.runDir, 0o700))
	must(c.t, os.MkdirAll(p.dataDir, 0o700))
	paths := c.mountPaths(ctr, p)
	p.argv = rewriteAll(ctr.Command, paths)
	env, err := c.resolveEnv(ctr.Env, name, addr, paths)
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	// The address hook: where to listen, and where the probes ask. Nothing else differs
	// from the pod.
	p.env = append(env, "BIND_ADDRESS="+addr, "BIND_PROBE_HOST="+addr)
	return p
}

// mountPaths maps each volume mount of the container to a local directory.
func (c *cluster) mountPaths(ctr corev1.Container, p *pod) map[string]string {
	out := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		switch m.Name {
		case "config":
			out[m.MountPath] = c.configDir
		case "run":
			out[m.MountPath] = p.runDir
		case "data":
			out[m.MountPath] = p.dataDir
		case "users":
			out[m.MountPath] = c.usersDir
		default:
			c.t.Fatalf("%s: unexpected volume mount %s", p.name, m.Name)
		}
	}
	return out
}

// rewrite points a path under a mount at its local directory.
func rewrite(s string, paths map[string]string) string {
	for from, to := range paths {
		if s == from {
			return to
		}
		if strings.HasPrefix(s, from+"/") {
			return to + s[len(from):]
		}
	}
	return s
}

func rewriteAll(in []string, paths map[string]string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = rewrite(s, paths)
	}
	return out
}

// resolveEnv does what the kubelet does with a container's env: downward-API fields,
// Secret keys (from the rendered Secrets), and $(VAR) references to earlier variables.
func (c *cluster) resolveEnv(env []corev1.EnvVar, podName, podIP string, paths map[string]string) ([]string, error) {
	vals := map[string]string{}
	var order []string
	for _, e := range env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = expandVars(e.Value, vals)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = podName
			case "metadata.namespace":
				v = c.sc.Namespace
			case "status.podIP":
				v = podIP
			default:
				return nil, fmt.Errorf("env %s: unsupported field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := c.secrets[ref.Name]
			if !ok {
				return nil, fmt.Errorf("env %s: Secret %s not rendered", e.Name, ref.Name)
			}
			raw, ok := s.Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			v = string(raw)
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
		if _, seen := vals[e.Name]; !seen {
			order = append(order, e.Name)
		}
		vals[e.Name] = rewrite(v, paths)
	}
	out := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + podName}
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

// expandVars is the kubelet's $(VAR) expansion: defined names are replaced, $$ is a
// literal $, anything else stays as written.
func expandVars(s string, vals map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func setEnv(env []string, key, val string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return append(out, key+"="+val)
}

// start runs the pod's container command, as the kubelet starts (or restarts) it.
func (c *cluster) start(p *pod) {
	c.t.Helper()
	p.starts++
	p.logOffset = 0
	if fi, err := os.Stat(p.logPath); err == nil {
		p.logOffset = fi.Size()
	}
	pr, err := startProc(p.name, p.argv, p.env, p.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	p.proc = pr
}

// wipe empties the pod's volumes, as when the pod is deleted and made anew.
func (c *cluster) wipe(p *pod) {
	for _, d := range []string{p.runDir, p.dataDir} {
		must(c.t, os.RemoveAll(d))
		must(c.t, os.MkdirAll(d, 0o700))
	}
}

func (c *cluster) stopAll() {
	for _, group := range [][]*pod{c.apps, c.sentinels, c.redis} {
		for _, p := range group {
			if p.proc != nil {
				p.proc.kill(syscall.SIGKILL)
			}
		}
	}
}

// probe runs an exec probe in the pod's environment, bounded by its timeout.
func (c *cluster) probe(p *pod, pr *corev1.Probe) error {
	if pr == nil || pr.Exec == nil {
		return fmt.Errorf("%s: no exec probe", p.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(pr.TimeoutSeconds)*time.Second)
	defer cancel()
	argv := rewriteAll(pr.Exec.Command, c.mountPaths(p.container, p))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", p.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitReady polls the pods' readiness probes until every one passes.
func (c *cluster) waitReady(timeout time.Duration, pods ...*pod) error {
	deadline := time.Now().Add(timeout)
	for {
		var last error
		for _, p := range pods {
			if p.proc == nil || !p.proc.running() {
				last = fmt.Errorf("%s: not running", p.name)
				break
			}
			if err := c.probe(p, p.readyProbe); err != nil {
				last = err
				break
			}
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// startStore starts every server and Sentinel at once (the StatefulSets are Parallel)
// and waits for all of them to be ready.
func (c *cluster) startStore() {
	c.t.Helper()
	for _, p := range c.redis {
		c.start(p)
	}
	for _, p := range c.sentinels {
		c.start(p)
	}
	if err := c.waitReady(90*time.Second, append(append([]*pod{}, c.redis...), c.sentinels...)...); err != nil {
		c.dumpLogs()
		c.t.Fatalf("store: %v", err)
	}
}

func (c *cluster) dumpLogs() {
	for _, group := range [][]*pod{c.redis, c.sentinels, c.apps} {
		for _, p := range group {
			raw, _ := os.ReadFile(p.logPath)
			lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			c.t.Logf("---- %s (last lines of %s)\n%s", p.name, p.logPath, strings.Join(lines, "\n"))
		}
	}
}

// currentLog is what the pod's current start has written so far.
func (p *pod) currentLog() string {
	raw, err := os.ReadFile(p.logPath)
	if err != nil || int64(len(raw)) < p.logOffset {
		return ""
	}
	return string(raw[p.logOffset:])
}

func (c *cluster) redisPod(host string) *pod {
	for _, p := range c.redis {
		if p.host == host || p.name == host {
			return p
		}
	}
	return nil
}

func (c *cluster) sentinelAddrs() []string {
	return render.HostPorts(c.names.SentinelHosts(int32(len(c.sentinels))), render.SentinelPort)
}

// startSettledStore starts every server and Sentinel and waits until the Sentinels agree on
// a primary that every replica follows; it returns that primary.
func (c *cluster) startSettledStore() string {
	c.t.Helper()
	c.startStore()
	first, err := c.sentinelsPrimary()
	must(c.t, err)
	if err := c.waitSettled(first, 60*time.Second); err != nil {
		c.dumpLogs()
		c.t.Fatal(err)
	}
	return first
}
