//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// The Clustered mode with a real Tomcat cluster: Debian's Tomcat 10.1 (examples/tomcat)
// replicating sessions with SimpleTcpCluster + DeltaManager, members found through the
// operator's headless peer Service (DNS_MEMBERSHIP_SERVICE_NAME). Each pod is reached
// directly through the apiserver's pod proxy with the session's JSESSIONID cookie.

var tomcatImage = envOr("TOMCAT_IMG", "session-tomcat:10.1")

const (
	nsTomcat       = "e2e-tomcat"
	tomcatSC       = "tomcat"
	tomcatApp      = "web"
	tomcatSessions = 200
)

// tomcatSession is one session and the highest counter Tomcat acknowledged for it.
type tomcatSession struct {
	ID    string
	Acked int64
}

// tomcatAnswer is the counter's JSON (examples/tomcat CounterServlet).
type tomcatAnswer struct {
	ID       string `json:"id"`
	Counter  int64  `json:"counter"`
	Instance string `json:"instance"`
}

// tomcatClient talks to single Tomcat pods through the apiserver's pod proxy.
type tomcatClient struct {
	cs *kubernetes.Clientset
}

func newTomcatClient() (*tomcatClient, error) {
	cfg := rest.CopyConfig(e.cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &tomcatClient{cs: cs}, nil
}

// errNoSession is Tomcat's 404: the pod does not know the session.
var errNoSession = errors.New("session unknown to this pod")

func (c *tomcatClient) call(ctx context.Context, verb, pod, path, sid string, read bool) (tomcatAnswer, error) {
	req := c.cs.CoreV1().RESTClient().Verb(verb).Namespace(nsTomcat).Resource("pods").
		Name(pod + ":8080").SubResource("proxy").Suffix(path)
	if read {
		req = req.Param("read", "1")
	}
	if sid != "" {
		req = req.SetHeader("Cookie", "JSESSIONID="+sid)
	}
	res := req.Do(ctx)
	var code int
	res.StatusCode(&code)
	raw, err := res.Raw()
	if code == 404 {
		return tomcatAnswer{}, errNoSession
	}
	if err != nil {
		return tomcatAnswer{}, fmt.Errorf("%s %s on %s: HTTP %d: %w", verb, path, pod, code, err)
	}
	var a tomcatAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, fmt.Errorf("%s %s on %s: %w: %q", verb, path, pod, err, truncate(string(raw), 200))
	}
	return a, nil
}

func (c *tomcatClient) login(ctx context.Context, pod string) (tomcatAnswer, error) {
	return c.call(ctx, "POST", pod, "login", "", false)
}

func (c *tomcatClient) bump(ctx context.Context, pod, sid string) (tomcatAnswer, error) {
	return c.call(ctx, "GET", pod, "session", sid, false)
}

func (c *tomcatClient) read(ctx context.Context, pod, sid string) (tomcatAnswer, error) {
	return c.call(ctx, "GET", pod, "session", sid, true)
}

// check reads every session on pod: ok when the pod knows it with at least the
// acknowledged counter. It returns the ids that failed, with why.
func (c *tomcatClient) check(ctx context.Context, pod string, sessions []*tomcatSession) []string {
	var mu sync.Mutex
	var bad []string
	parallel(len(sessions), 8, func(i int) {
		s := sessions[i]
		a, err := c.read(ctx, pod, s.ID)
		var why string
		switch {
		case err != nil:
			why = err.Error()
		case a.Counter < s.Acked:
			why = fmt.Sprintf("counter %d < acknowledged %d", a.Counter, s.Acked)
		case a.Instance != pod:
			why = fmt.Sprintf("answered by %q, not %s", a.Instance, pod)
		}
		if why != "" {
			mu.Lock()
			bad = append(bad, s.ID+": "+why)
			mu.Unlock()
		}
	})
	sort.Strings(bad)
	return bad
}

func parallel(n, workers int, fn func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// tomcatRun is what the Tomcat steps share.
type tomcatRun struct {
	c        *tomcatClient
	sessions []*tomcatSession
}

// testTomcat runs the Tomcat steps in order; each needs the one before it.
func testTomcat(t *testing.T) {
	r := &tomcatRun{}
	ok := step(t, "tomcat/ready", r.ready)
	ok = ok && step(t, "tomcat/replicated", r.replicated)
	ok = ok && step(t, "tomcat/pod-deleted", r.podDeleted)
	ok = ok && step(t, "tomcat/scale-out", r.scaleOut)
	ok = ok && step(t, "tomcat/scale-in", r.scaleIn)
	step(t, "tomcat/delete", func(t *testing.T) {
		ctx := context.Background()
		sc := &sessionv1.SessionCluster{ObjectMeta: metav1.ObjectMeta{Namespace: nsTomcat, Name: tomcatSC}}
		if err := client.IgnoreNotFound(e.c.Delete(ctx, sc)); err != nil {
			t.Fatal(err)
		}
		err := poll(2*time.Minute, time.Second, func() (bool, error) {
			pods, err := e.podsOf(ctx, nsTomcat, tomcatSC)
			return len(pods) == 0, err
		})
		if err != nil {
			t.Errorf("Tomcat pods still there after the SessionCluster was deleted: %v", err)
		}
	})
	_ = ok
}

func (r *tomcatRun) ready(t *testing.T) {
	ctx := context.Background()
	var err error
	if r.c, err = newTomcatClient(); err != nil {
		t.Fatal(err)
	}
	e.createNamespace(t, nsTomcat)
	sc := &sessionv1.SessionCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsTomcat, Name: tomcatSC},
		Spec: sessionv1.SessionClusterSpec{
			Mode: sessionv1.ModeClustered,
			Apps: []sessionv1.AppSpec{{
				Name: tomcatApp, Image: tomcatImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Replicas: ptr.To[int32](3), Port: 8080, HealthPath: "/healthz",
			}},
			Clustering: &sessionv1.ClusteringSpec{Port: 4000, Discovery: sessionv1.DiscoveryDNS},
		},
	}
	start := time.Now()
	if err := e.c.Create(ctx, sc); err != nil {
		t.Fatalf("creating the Tomcat SessionCluster: %v", err)
	}
	e.waitSC(t, nsTomcat, tomcatSC, 5*time.Minute, "Ready=True", isReady)
	e.res.TomcatReadySeconds = secs(time.Since(start))
	logf("tomcat: Ready after %.1f s", e.res.TomcatReadySeconds)

	peers := &corev1.Service{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsTomcat, Name: tomcatSC + "-" + tomcatApp + "-peers"}, peers); err != nil {
		t.Fatalf("peer Service: %v", err)
	}
	tcp := false
	for _, p := range peers.Spec.Ports {
		tcp = tcp || (p.Port == 4000 && p.Protocol == corev1.ProtocolTCP)
	}
	if !tcp || !peers.Spec.PublishNotReadyAddresses || peers.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("peer Service: ports %+v, publishNotReadyAddresses %v, clusterIP %q; want 4000/TCP, true, None",
			peers.Spec.Ports, peers.Spec.PublishNotReadyAddresses, peers.Spec.ClusterIP)
	}
	pods := e.checkPodsRestricted(t, nsTomcat, tomcatSC, 3)
	for _, p := range pods {
		logs, _ := e.kc("-n", nsTomcat, "logs", p.Name, "--tail=400")
		members := strings.Count(logs, "Replication member added")
		logf("tomcat: %s (%s): %d replication members added; %s", p.Name, p.Status.PodIP, members, lastMatch(logs, "DeltaManager.getAllClusterSessions", "DeltaManager.waitForSendAllSessions"))
	}
}

// replicated makes the sessions on one pod and reads each on every other pod, timing
// each write on one pod to its read on another.
func (r *tomcatRun) replicated(t *testing.T) {
	ctx := context.Background()
	pods := e.checkPodsRestricted(t, nsTomcat, tomcatSC, 3)
	if len(pods) < 3 {
		t.Fatalf("%d Tomcat pods ready, want 3", len(pods))
	}
	first := pods[0].Name
	sessions := make([]*tomcatSession, tomcatSessions)
	var failed atomic.Int32
	var firstErr atomic.Value
	parallel(tomcatSessions, 8, func(i int) {
		a, err := r.c.login(ctx, first)
		if err == nil {
			a, err = r.c.bump(ctx, first, a.ID)
		}
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		sessions[i] = &tomcatSession{ID: a.ID, Acked: a.Counter}
	})
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d sessions could not be made on %s: %v", n, tomcatSessions, first, firstErr.Load())
	}
	r.sessions = sessions
	e.res.TomcatSessions = len(sessions)

	// Every session on every other pod.
	everywhere := map[string]int{}
	for _, p := range pods[1:] {
		bad := r.c.check(ctx, p.Name, sessions)
		for _, b := range bad {
			everywhere[strings.SplitN(b, ":", 2)[0]]++
		}
		if len(bad) > 0 {
			t.Errorf("%s lacks %d of the %d sessions made on %s, e.g. %s", p.Name, len(bad), len(sessions), first, bad[0])
		}
	}
	e.res.TomcatReplicated = len(sessions) - len(everywhere)
	logf("tomcat: %d of %d sessions made on %s read on both other pods", e.res.TomcatReplicated, len(sessions), first)

	// A write on one pod to the first read on another that shows it.
	lat := make([]time.Duration, len(sessions))
	var late atomic.Int32
	parallel(len(sessions), 8, func(i int) {
		s := sessions[i]
		w, o := pods[i%len(pods)].Name, pods[(i+1)%len(pods)].Name
		a, err := r.c.bump(ctx, w, s.ID)
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		acked := time.Now()
		s.Acked = a.Counter
		for {
			b, err := r.c.read(ctx, o, s.ID)
			if err == nil && b.Counter >= a.Counter {
				lat[i] = time.Since(acked)
				return
			}
			if time.Since(acked) > 10*time.Second {
				late.Add(1)
				lat[i] = time.Since(acked)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	if n := failed.Load(); n > 0 {
		t.Errorf("%d writes failed: %v", n, firstErr.Load())
	}
	if n := late.Load(); n > 0 {
		t.Errorf("%d writes not visible on another pod within 10 s", n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	e.res.TomcatReplicationP50 = secsPrecise(quantile(lat, 0.50))
	e.res.TomcatReplicationP99 = secsPrecise(quantile(lat, 0.99))
	logf("tomcat: write on one pod to its read on another: p50 %.4f s, p99 %.4f s (each a read through the apiserver's pod proxy)",
		e.res.TomcatReplicationP50, e.res.TomcatReplicationP99)
}

// podDeleted deletes the pod the sessions were made on: every session stays on the
// others, and the Deployment's replacement copies them all before it is ready.
func (r *tomcatRun) podDeleted(t *testing.T) {
	ctx := context.Background()
	pods := e.checkPodsRestricted(t, nsTomcat, tomcatSC, 3)
	victim := pods[0]
	logf("tomcat: deleting pod %s", victim.Name)
	if err := e.c.Delete(ctx, &victim); err != nil {
		t.Fatal(err)
	}
	// The survivors, at once.
	lost := map[string]bool{}
	for _, p := range pods[1:] {
		bad := r.c.check(ctx, p.Name, r.sessions)
		for _, b := range bad {
			lost[strings.SplitN(b, ":", 2)[0]] = true
		}
		if len(bad) > 0 {
			t.Errorf("%s lacks %d sessions after %s was deleted, e.g. %s", p.Name, len(bad), victim.Name, bad[0])
		}
	}
	// The replacement, once ready. A replacement that starts while the deleted pod still
	// drains (its preStop) may ask that pod for the sessions, time out empty and stay
	// unready until its startup probe restarts it (2 s x 90); the second start joins. Seen
	// once in four runs; the wait allows that restart, and the note on issue 13 says so.
	var now []corev1.Pod
	err := poll(5*time.Minute, time.Second, func() (bool, error) {
		now = readyPods(ctx, t, nsTomcat, tomcatSC)
		return len(now) == 3 && !hasPod(now, victim.Name), nil
	})
	if err != nil {
		t.Fatalf("no third ready pod after deleting %s: %v", victim.Name, err)
	}
	for _, p := range now {
		if hasPod(pods, p.Name) {
			continue
		}
		bad := r.c.check(ctx, p.Name, r.sessions)
		for _, b := range bad {
			lost[strings.SplitN(b, ":", 2)[0]] = true
		}
		if len(bad) > 0 {
			t.Errorf("replacement %s lacks %d sessions, e.g. %s", p.Name, len(bad), bad[0])
		}
		logf("tomcat: replacement %s holds %d of %d sessions", p.Name, len(r.sessions)-len(bad), len(r.sessions))
	}
	e.res.TomcatLostOnPodDelete = len(lost)
}

// podFacts is what would change if a pod restarted or was replaced.
type podFacts struct {
	UID          string
	Restarts     int32
	StartedAt    string
	TemplateHash string
}

func factsOf(p *corev1.Pod) podFacts {
	f := podFacts{UID: string(p.UID), TemplateHash: p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]}
	for _, cs := range p.Status.ContainerStatuses {
		f.Restarts += cs.RestartCount
		if cs.State.Running != nil {
			f.StartedAt = cs.State.Running.StartedAt.UTC().Format(time.RFC3339)
		}
	}
	return f
}

// scaleOut raises replicas 3 -> 5 while clients keep writing to every session through
// the old pods; then the new pods must serve every session at its latest acknowledged
// value, and no old pod may have restarted or been replaced.
func (r *tomcatRun) scaleOut(t *testing.T) {
	ctx := context.Background()
	old := e.checkPodsRestricted(t, nsTomcat, tomcatSC, 3)
	before := map[string]podFacts{}
	for i := range old {
		before[old[i].Name] = factsOf(&old[i])
	}
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsTomcat, Name: tomcatSC + "-" + tomcatApp}, dep); err != nil {
		t.Fatal(err)
	}
	templateBefore := dep.Spec.Template.Annotations

	// Load: 4 writers, each owning a quarter of the sessions, bumping them round robin
	// over the old pods until told to stop.
	stop := make(chan struct{})
	var writes, writeErrs atomic.Int64
	var wg sync.WaitGroup
	const writers = 4
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				for i := w; i < len(r.sessions); i += writers {
					select {
					case <-stop:
						return
					default:
					}
					s := r.sessions[i]
					a, err := r.c.bump(ctx, old[(i+n)%len(old)].Name, s.ID)
					writes.Add(1)
					if err != nil {
						writeErrs.Add(1)
						continue
					}
					s.Acked = max(s.Acked, a.Counter)
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	start := time.Now()
	if err := e.setReplicas(ctx, 5); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	var now []corev1.Pod
	err := poll(4*time.Minute, time.Second, func() (bool, error) {
		now = readyPods(ctx, t, nsTomcat, tomcatSC)
		return len(now) == 5, nil
	})
	scaled := time.Since(start)
	// Keep writing a little while the new pods serve, then stop and check.
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("5 ready pods after raising replicas: %v", err)
	}
	e.res.TomcatScaleOutSeconds = secs(scaled)
	e.res.TomcatScaleOutWrites = int(writes.Load())
	e.res.TomcatScaleOutWriteErrors = int(writeErrs.Load())
	logf("tomcat: 5 pods ready %.1f s after raising replicas; %d writes during scale-out, %d failed",
		scaled.Seconds(), writes.Load(), writeErrs.Load())
	if writeErrs.Load() > 0 {
		t.Errorf("%d of %d writes through the old pods failed during scale-out", writeErrs.Load(), writes.Load())
	}
	if _, err := e.sessionClusterReady(ctx, t); err != nil {
		t.Error(err)
	}

	// New pods serve every session at its latest acknowledged counter.
	served := len(r.sessions)
	for _, p := range now {
		if _, wasOld := before[p.Name]; wasOld {
			continue
		}
		bad := r.c.check(ctx, p.Name, r.sessions)
		served = min(served, len(r.sessions)-len(bad))
		if len(bad) > 0 {
			t.Errorf("new pod %s: %d of %d sessions missing or stale, e.g. %s", p.Name, len(bad), len(r.sessions), bad[0])
		}
		logf("tomcat: new pod %s serves %d of %d sessions", p.Name, len(r.sessions)-len(bad), len(r.sessions))
	}
	e.res.TomcatServedByNewPods = served

	// The old pods: same pod, same container run, same template; the pod template did
	// not change either (nothing was rolled or reconfigured).
	restarted := 0
	for name, f := range before {
		p := &corev1.Pod{}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: nsTomcat, Name: name}, p)
		if err != nil || factsOf(p) != f {
			restarted++
			got := podFacts{}
			if err == nil {
				got = factsOf(p)
			}
			t.Errorf("old pod %s changed during scale-out: before %+v, after %+v (%v)", name, f, got, err)
		}
	}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsTomcat, Name: tomcatSC + "-" + tomcatApp}, dep); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dep.Spec.Template.Annotations) != fmt.Sprint(templateBefore) {
		t.Errorf("the pod template changed with the replica count: %v -> %v", templateBefore, dep.Spec.Template.Annotations)
	}
	e.res.TomcatOldPodsRestarted = restarted
	for _, p := range old {
		bad := r.c.check(ctx, p.Name, r.sessions)
		if len(bad) > 0 {
			t.Errorf("old pod %s: %d sessions missing or stale after scale-out, e.g. %s", p.Name, len(bad), bad[0])
		}
	}
}

// scaleIn goes back to 3 replicas: the pods that stay still hold every session.
func (r *tomcatRun) scaleIn(t *testing.T) {
	ctx := context.Background()
	if err := e.setReplicas(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var now []corev1.Pod
	err := poll(3*time.Minute, time.Second, func() (bool, error) {
		pods, err := e.podsOf(ctx, nsTomcat, tomcatSC)
		if err != nil {
			return false, err
		}
		now = readyPods(ctx, t, nsTomcat, tomcatSC)
		return len(pods) == 3 && len(now) == 3, nil
	})
	if err != nil {
		t.Fatalf("back to 3 pods: %v", err)
	}
	lost := map[string]bool{}
	for _, p := range now {
		for _, b := range r.c.check(ctx, p.Name, r.sessions) {
			lost[strings.SplitN(b, ":", 2)[0]] = true
			t.Errorf("%s after scale-in: %s", p.Name, b)
		}
	}
	e.res.TomcatLostOnScaleIn = len(lost)
	if _, err := e.sessionClusterReady(ctx, t); err != nil {
		t.Error(err)
	}
	logf("tomcat: back to 3 pods; %d of %d sessions lost", len(lost), len(r.sessions))
}

func (e *env) setReplicas(ctx context.Context, n int32) error {
	sc, err := e.getSC(ctx, nsTomcat, tomcatSC)
	if err != nil {
		return err
	}
	patch := client.MergeFrom(sc.DeepCopy())
	sc.Spec.Apps[0].Replicas = &n
	if err := e.c.Patch(ctx, sc, patch); err != nil {
		return fmt.Errorf("replicas -> %d: %w", n, err)
	}
	logf("tomcat: spec.apps[0].replicas -> %d", n)
	return nil
}

func (e *env) sessionClusterReady(ctx context.Context, t *testing.T) (*sessionv1.SessionCluster, error) {
	var sc *sessionv1.SessionCluster
	err := poll(2*time.Minute, time.Second, func() (bool, error) {
		var err error
		sc, err = e.getSC(ctx, nsTomcat, tomcatSC)
		return err == nil && isReady(sc), err
	})
	if err != nil {
		msg := ""
		if sc != nil {
			msg = readyMessage(sc)
		}
		return sc, fmt.Errorf("SessionCluster not Ready: %v (%s)", err, msg)
	}
	return sc, nil
}

func readyPods(ctx context.Context, t *testing.T, ns, instance string) []corev1.Pod {
	pods, err := e.podsOf(ctx, ns, instance)
	if err != nil {
		t.Logf("listing pods: %v", err)
		return nil
	}
	var out []corev1.Pod
	for i := range pods {
		if podReady(&pods[i]) {
			out = append(out, pods[i])
		}
	}
	return out
}

func hasPod(pods []corev1.Pod, name string) bool {
	for _, p := range pods {
		if p.Name == name {
			return true
		}
	}
	return false
}

// lastMatch returns the last log line containing any of the needles, shortened.
func lastMatch(logs string, needles ...string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		for _, n := range needles {
			if strings.Contains(lines[i], n) {
				return truncate(strings.TrimSpace(lines[i]), 240)
			}
		}
	}
	return "(no state transfer line)"
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func secsPrecise(d time.Duration) float64 { return float64(d.Microseconds()) / 1e6 }
