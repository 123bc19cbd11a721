//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
)

// netpolEngine is what enforces NetworkPolicy in the local cluster (hack/netpol).
const netpolEngine = "kube-network-policies v0.8.0, NFQUEUE through xtables (hack/netpol)"

// netpolResults are the NetworkPolicy figures, inline in bin/results/e2e.json.
type netpolResults struct {
	NetpolEngine string `json:"netpol_engine,omitempty"`
	// No pod without the cluster's labels could open a connection to Redis or a
	// Sentinel, nor a pod with the operator's labels outside the operator's namespace.
	NetpolStrangerBlocked bool `json:"netpol_stranger_blocked"`
	// Pods with an app's labels or the client label, a Sentinel, and a pod with the
	// operator's labels in the operator's namespace could; and the operator named the
	// primary (it reads the Sentinels through the policy).
	NetpolAppAllowed bool `json:"netpol_app_allowed"`
}

// netpolProbe is a pod that tries to connect, and whether the store's policy admits it.
type netpolProbe struct {
	namespace, name string
	labels          map[string]string
	admitted        bool
}

// testNetworkPolicy probes the hybrid cluster of testRouting (which has a store) from
// pods with and without its labels, by TCP to a Redis server's and a Sentinel's pod IP,
// and from a Sentinel's own container to the Redis server.
func testNetworkPolicy(t *testing.T) {
	ctx := context.Background()
	e.res.NetpolEngine = netpolEngine
	const sc = "hybrid"
	cluster, err := e.getSC(ctx, nsRouting, sc)
	if err != nil {
		t.Fatalf("the hybrid cluster of routing/traefik: %v", err)
	}
	if cluster.Status.Store == nil || cluster.Status.Store.Primary == "" {
		t.Fatalf("the operator names no primary: it could not read the Sentinels through the policy (%s)", readyMessage(cluster))
	}
	targets := map[string]string{}
	for _, name := range []string{sc + "-store-0", sc + "-sentinel-0"} {
		pod := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsRouting, Name: name}, pod); err != nil || pod.Status.PodIP == "" {
			t.Fatalf("pod %s: %v (IP %q)", name, err, pod.Status.PodIP)
		}
		port := render.RedisPort
		if strings.Contains(name, "sentinel") {
			port = render.SentinelPort
		}
		targets[name] = fmt.Sprintf("%s %d", pod.Status.PodIP, port)
	}
	var appLabels map[string]string
	pods, err := e.podsOf(ctx, nsRouting, sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Labels[render.LabelComponent] == render.ComponentApp {
			appLabels = map[string]string{}
			for k, v := range p.Labels {
				if k != "pod-template-hash" {
					appLabels[k] = v
				}
			}
			break
		}
	}
	if appLabels == nil {
		t.Fatal("no app pod of the hybrid cluster")
	}
	probes := []netpolProbe{
		{nsRouting, "e2e-stranger", map[string]string{"e2e": "stranger"}, false},
		{nsRouting, "e2e-operator-impostor", operatorPodLabels("impostor"), false},
		{nsRouting, "e2e-app-labels", appLabels, true},
		{nsRouting, "e2e-client", map[string]string{"e2e": "client", render.LabelClient: sc}, true},
		{operatorNS, "e2e-operator-labels", operatorPodLabels("probe"), true},
	}
	for _, p := range probes {
		e.startProbe(t, p.namespace, p.name, p.labels)
	}
	blocked, allowed := true, true
	names := make([]string, 0, len(targets))
	for target := range targets {
		names = append(names, target)
	}
	sort.Strings(names)
	for _, target := range names {
		for _, p := range probes {
			got := e.connects(p.namespace, p.name, "", targets[target])
			switch {
			case got && !p.admitted:
				blocked = false
				t.Errorf("%s/%s (labels %v) connected to %s (%s)", p.namespace, p.name, p.labels, target, targets[target])
			case !got && p.admitted:
				allowed = false
				t.Errorf("%s/%s (labels %v) could not connect to %s (%s)", p.namespace, p.name, p.labels, target, targets[target])
			}
		}
	}
	if !blocked {
		t.Log("is NetworkPolicy enforced at all? hack/local-cluster.sh runs kube-network-policies unless LOCAL_CLUSTER_NETPOL=none (hack/README-cluster.md)")
	}
	// A Sentinel's own connection to the server it watches.
	if !e.connects(nsRouting, sc+"-sentinel-0", "sentinel", targets[sc+"-store-0"]) {
		allowed = false
		t.Errorf("the Sentinel %s-sentinel-0 could not connect to %s-store-0", sc, sc)
	}
	e.res.NetpolStrangerBlocked, e.res.NetpolAppAllowed = blocked, allowed
	logf("netpol: stranger and impostor blocked %v; app, client, Sentinel and operator allowed %v", blocked, allowed)
	if cluster, err = e.getSC(ctx, nsRouting, sc); err != nil || !isReady(cluster) {
		t.Errorf("hybrid not Ready under enforced policies: %v %s", err, readyMessage(cluster))
	}
}

// operatorPodLabels are the labels the store's NetworkPolicy admits the operator by
// (render.DefaultOperatorPodLabels), with a marker so the operator's own listings, which
// also match the chart's instance label, never count the probe.
func operatorPodLabels(role string) map[string]string {
	l := map[string]string{"e2e": role}
	for k, v := range render.DefaultOperatorPodLabels {
		l[k] = v
	}
	return l
}

// connects reports whether the container (the pod's first when container is "") could
// open a TCP connection to "IP PORT": Redis or a Sentinel answers PING with a line (+PONG,
// or -NOAUTH); a dropped SYN leaves nothing within the timeout.
func (e *env) connects(namespace, pod, container, target string) bool {
	args := []string{"-n", namespace, "exec", pod}
	if container != "" {
		args = append(args, "-c", container)
	}
	args = append(args, "--", "sh", "-c", fmt.Sprintf("printf 'PING\\r\\n' | timeout 6 nc -w 4 %s", target))
	out, _ := e.kc(args...)
	out = strings.TrimSpace(out)
	return strings.HasPrefix(out, "+") || strings.HasPrefix(out, "-")
}

// startProbe runs a pod of the store image (busybox nc) with the given labels, removed
// when the step ends.
func (e *env) startProbe(t *testing.T, namespace, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			AutomountServiceAccountToken:  ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](999),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "probe", Image: storeImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", "sleep 3600"},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if err := e.c.Create(ctx, pod); err != nil {
		t.Fatalf("probe %s/%s: %v", namespace, name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := e.c.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("removing probe %s/%s: %v", namespace, name, err)
		}
		// Gone before the next step, which may count the operator's pods by their labels.
		err := poll(time.Minute, 500*time.Millisecond, func() (bool, error) {
			err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("probe %s/%s still there: %v", namespace, name, err)
		}
	})
	err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, err
		}
		return podReady(p), nil
	})
	if err != nil {
		t.Fatalf("probe %s/%s not running: %v", namespace, name, err)
	}
}
