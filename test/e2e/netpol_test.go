//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sessionops/session-operator/internal/render"
)

// netpolResults are the NetworkPolicy figures, inline in bin/results/e2e.json.
type netpolResults struct {
	NetpolEngine string `json:"netpol_engine,omitempty"`
	// A pod without the cluster's labels could open no connection to Redis or a Sentinel.
	NetpolStrangerBlocked bool `json:"netpol_stranger_blocked"`
	// Pods with an app's labels, or the client label, could; and the operator read the
	// Sentinels (status names the primary).
	NetpolAppAllowed bool `json:"netpol_app_allowed"`
}

// testNetworkPolicy probes the hybrid cluster of testRouting (which has a store) from
// pods with and without its labels, by TCP to a Redis server's and a Sentinel's pod IP.
func testNetworkPolicy(t *testing.T) {
	ctx := context.Background()
	e.res.NetpolEngine = "kube-network-policies v0.8.0 (hack/netpol)"
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
	probes := map[string]map[string]string{
		"e2e-stranger":   {"e2e": "stranger"},
		"e2e-app-labels": appLabels,
		"e2e-client":     {"e2e": "client", render.LabelClient: sc},
	}
	for name, labels := range probes {
		e.startProbe(t, name, labels)
	}
	connects := func(probe, target string) bool {
		// The first line Redis or Sentinel sends back to PING (+PONG, or -NOAUTH): a
		// connection was made. Dropped SYNs leave nothing within the timeout.
		out, _ := e.kc("-n", nsRouting, "exec", probe, "--", "sh", "-c",
			fmt.Sprintf("printf 'PING\\r\\n' | timeout 6 nc -w 4 %s", targets[target]))
		return strings.HasPrefix(strings.TrimSpace(out), "+") || strings.HasPrefix(strings.TrimSpace(out), "-")
	}
	blocked, allowed := true, true
	for target := range targets {
		if connects("e2e-stranger", target) {
			blocked = false
			t.Errorf("a pod without the cluster's labels connected to %s (%s)", target, targets[target])
		}
		for _, probe := range []string{"e2e-app-labels", "e2e-client"} {
			if !connects(probe, target) {
				allowed = false
				t.Errorf("%s could not connect to %s (%s)", probe, target, targets[target])
			}
		}
	}
	e.res.NetpolStrangerBlocked, e.res.NetpolAppAllowed = blocked, allowed
	logf("netpol: stranger blocked %v, app and client labels allowed %v", blocked, allowed)
	if !isReady(cluster) {
		t.Errorf("hybrid not Ready under enforced policies: %s", readyMessage(cluster))
	}
}

// startProbe runs a pod of the store image (busybox nc) with the given labels.
func (e *env) startProbe(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsRouting, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
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
		t.Fatalf("probe %s: %v", name, err)
	}
	err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, err
		}
		return podReady(p), nil
	})
	if err != nil {
		t.Fatalf("probe %s not running: %v", name, err)
	}
}
