//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Cookie affinity proven through the local cluster's ingress controller (Traefik, from
// hack/local-cluster.sh): requests reach it at the address it published in the Ingress's
// status, as a browser would, with the Host header of the spec.

const (
	nsRouting = "e2e-routing"
	// routingController is what serves Ingresses of class routingClass in the local cluster.
	routingController = "traefik v3.7.13 (hack/traefik, Kubernetes Ingress provider)"
	routingClass      = "traefik"
	// Requests per affinity measurement.
	routingRequests = 50
)

// routingResults are the figures of the routing steps, inline in bin/results/e2e.json.
type routingResults struct {
	RoutingController string `json:"routing_controller,omitempty"`
	// Requests carrying the affinity cookie that reached the pod of the first one.
	StickySamePodRatio float64 `json:"sticky_same_pod_ratio"`
	// Distinct pods reached by requests without cookies.
	NoCookiePodsHit int `json:"no_cookie_pods_hit"`
	// The affinity cookie's name, Max-Age, Path, SameSite, Secure and HttpOnly as the spec says.
	CookieAttributesMatch bool   `json:"cookie_attributes_match"`
	CookieSeen            string `json:"cookie_seen,omitempty"`
	// Sessions pinned to a pod that was then deleted, and how many of them were lost.
	HybridSessionsPinnedToDeletedPod int `json:"hybrid_sessions_pinned_to_deleted_pod"`
	HybridSessionsLostOnPinnedDelete int `json:"hybrid_sessions_lost_on_pinned_pod_delete"`
	StickySessionsPinnedToDeletedPod int `json:"sticky_sessions_pinned_to_deleted_pod"`
	StickySessionsLostOnPinnedDelete int `json:"sticky_sessions_lost_on_pinned_pod_delete"`
	// "proven", or why the Gateway API path was not.
	GatewaySessionPersistence string `json:"gateway_session_persistence,omitempty"`
	// Apply to Ready=True (which needs the Ingress's address) of the routing clusters.
	RoutingReadySeconds float64 `json:"routing_ready_seconds"`
}

// testRouting: a Sticky-only cluster and a hybrid one (Sticky with a store), both behind
// Traefik. Everything measured lands in e.res even when a check fails.
func testRouting(t *testing.T) {
	ctx := context.Background()
	e.res.RoutingController = routingController
	e.res.GatewaySessionPersistence = "not proven: Traefik's Gateway API provider accepts an HTTPRoute with sessionPersistence and ignores it, and its GatewayClass lists no session-persistence feature (the operator reports that as RoutingReady=False SessionPersistenceUnsupported, covered by the envtest suite); no Gateway implementation that pins users builds here"
	if err := e.c.Get(ctx, client.ObjectKey{Name: routingClass}, &networkingv1.IngressClass{}); err != nil {
		t.Fatalf("IngressClass %s: %v (hack/local-cluster.sh up installs Traefik; LOCAL_CLUSTER_INGRESS=none leaves it out)", routingClass, err)
	}
	e.createNamespace(t, nsRouting)

	sticky := loadSample(t, "session_v1alpha1_sessioncluster_sticky.yaml", nsRouting)
	sticky.Name = "pinned"
	sticky.Spec.Apps[0].Replicas = ptr.To[int32](3)
	sticky.Spec.Sticky.SameSite = sessionv1.SameSiteStrict
	sticky.Spec.Sticky.Secure = ptr.To(true)
	sticky.Spec.Sticky.MaxAge = &metav1.Duration{Duration: 2 * time.Hour}
	throughTraefik(sticky, "pinned.e2e.test")

	hybrid := loadSample(t, "session_v1alpha1_sessioncluster_hybrid.yaml", nsRouting)
	hybrid.Name = "hybrid"
	throughTraefik(hybrid, "hybrid.e2e.test")

	start := time.Now()
	for _, sc := range []*sessionv1.SessionCluster{sticky, hybrid} {
		if err := e.c.Create(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, sc := range []*sessionv1.SessionCluster{sticky, hybrid} {
		e.waitSC(t, nsRouting, sc.Name, 6*time.Minute, "Ready=True", isReady)
	}
	e.res.RoutingReadySeconds = secs(time.Since(start))
	logf("routing: both clusters Ready (Ingress addressed by Traefik) %.1f s after apply", e.res.RoutingReadySeconds)

	pinned := e.routeTo(t, sticky)
	mixed := e.routeTo(t, hybrid)

	t.Run("cookie-attributes", func(t *testing.T) {
		// Secure asked for explicitly on one, left to the default (no TLS: off) on the other.
		ok1 := pinned.checkCookie(t, "route", 7200, "/", http.SameSiteStrictMode, true)
		ok2 := mixed.checkCookie(t, "route", 3600, "/", http.SameSiteLaxMode, false)
		e.res.CookieAttributesMatch = ok1 && ok2
	})
	t.Run("affinity", func(t *testing.T) {
		jar := pinned.login(t)
		first := jar.instance
		same := 0
		for range routingRequests {
			if s, err := pinned.session(jar); err != nil {
				t.Errorf("with the cookie: %v", err)
			} else if s.Instance == first {
				same++
			}
		}
		e.res.StickySamePodRatio = float64(same) / routingRequests
		hit := map[string]bool{}
		for range routingRequests {
			j := pinned.login(t)
			hit[j.instance] = true
		}
		e.res.NoCookiePodsHit = len(hit)
		logf("routing: %d/%d requests with the cookie on pod %s; without it %d pods hit", same, routingRequests, first, len(hit))
		if same != routingRequests {
			t.Errorf("%d of %d requests carrying the affinity cookie reached pod %s", same, routingRequests, first)
		}
		if len(hit) < 2 {
			t.Errorf("requests without a cookie reached %d pod(s), want at least 2 of 3", len(hit))
		}
	})
	t.Run("pinned-pod-deleted/sticky", func(t *testing.T) {
		pinnedN, lost := e.deletePinnedPod(t, pinned)
		e.res.StickySessionsPinnedToDeletedPod, e.res.StickySessionsLostOnPinnedDelete = pinnedN, lost
		// The documented cost of Sticky without a store: the pod's users are logged out.
		if lost != pinnedN {
			t.Errorf("Sticky only: %d of %d sessions of the deleted pod survived; they live in its memory", pinnedN-lost, pinnedN)
		}
	})
	t.Run("pinned-pod-deleted/hybrid", func(t *testing.T) {
		pinnedN, lost := e.deletePinnedPod(t, mixed)
		e.res.HybridSessionsPinnedToDeletedPod, e.res.HybridSessionsLostOnPinnedDelete = pinnedN, lost
		if lost != 0 {
			t.Errorf("hybrid: %d of %d sessions of the deleted pod lost", lost, pinnedN)
		}
	})
}

func throughTraefik(sc *sessionv1.SessionCluster, host string) {
	sc.Spec.Ingress = &sessionv1.IngressSpec{Host: host, ClassName: ptr.To(routingClass), Controller: sessionv1.ControllerTraefik}
}

// route is one SessionCluster's entry point: the address Traefik published in the
// Ingress's status, and the host the Ingress routes.
type route struct {
	sc    *sessionv1.SessionCluster
	addr  string
	host  string
	httpc *http.Client
}

func (e *env) routeTo(t *testing.T, sc *sessionv1.SessionCluster) *route {
	t.Helper()
	ing := &networkingv1.Ingress{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: sc.Namespace, Name: sc.Name + "-web"}, ing); err != nil {
		t.Fatal(err)
	}
	if len(ing.Status.LoadBalancer.Ingress) == 0 || ing.Status.LoadBalancer.Ingress[0].IP == "" {
		t.Fatalf("Ingress %s is Ready without an address: %+v", ing.Name, ing.Status)
	}
	return &route{
		sc: sc, addr: ing.Status.LoadBalancer.Ingress[0].IP, host: sc.Spec.Ingress.Host,
		httpc: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// jar is one user's cookies, kept by hand: the client must send a Secure cookie over the
// test's plain HTTP, which a browser's jar would refuse to.
type jar struct {
	cookies  map[string]*http.Cookie
	instance string
	counter  int64
}

type sessionBody struct {
	ID       string `json:"id"`
	Counter  int64  `json:"counter"`
	Instance string `json:"instance"`
}

func (r *route) do(method, path string, j *jar) (*http.Response, sessionBody, error) {
	var body sessionBody
	req, err := http.NewRequest(method, "http://"+r.addr+path, nil)
	if err != nil {
		return nil, body, err
	}
	req.Host = r.host
	if j != nil {
		for _, c := range j.cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return nil, body, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp, body, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return resp, body, fmt.Errorf("%s %s: %v in %q", method, path, err, b)
	}
	if j != nil {
		for _, c := range resp.Cookies() {
			j.cookies[c.Name] = c
		}
	}
	return resp, body, nil
}

// login is a new user: no cookie in, the session and affinity cookies out.
func (r *route) login(t *testing.T) *jar {
	t.Helper()
	j := &jar{cookies: map[string]*http.Cookie{}}
	var err error
	for range 20 { // Traefik may still be taking a fresh endpoint in
		var s sessionBody
		if _, s, err = r.do(http.MethodPost, "/login", j); err == nil {
			j.instance, j.counter = s.Instance, s.Counter
			return j
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: login through Traefik: %v", r.sc.Name, err)
	return nil
}

func (r *route) session(j *jar) (sessionBody, error) {
	_, s, err := r.do(http.MethodGet, "/session", j)
	if err == nil {
		j.counter = s.Counter
	}
	return s, err
}

func (r *route) checkCookie(t *testing.T, name string, maxAge int, path string, sameSite http.SameSite, secure bool) bool {
	t.Helper()
	resp, _, err := r.do(http.MethodPost, "/login", &jar{cookies: map[string]*http.Cookie{}})
	if err != nil {
		t.Errorf("%s: %v", r.sc.Name, err)
		return false
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == name {
			c = k
		}
	}
	if c == nil {
		t.Errorf("%s: no %q cookie in %v", r.sc.Name, name, resp.Header.Values("Set-Cookie"))
		return false
	}
	for _, raw := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(raw, name+"=") {
			e.res.CookieSeen = strings.TrimSpace(e.res.CookieSeen + " " + r.sc.Name + ": " + redactCookie(raw) + ";")
		}
	}
	ok := c.MaxAge == maxAge && c.Path == path && c.SameSite == sameSite && c.Secure == secure && c.HttpOnly
	if !ok {
		t.Errorf("%s: cookie %s: Max-Age %d Path %q SameSite %v Secure %v HttpOnly %v; want Max-Age %d Path %q SameSite %v Secure %v HttpOnly true",
			r.sc.Name, name, c.MaxAge, c.Path, c.SameSite, c.Secure, c.HttpOnly, maxAge, path, sameSite, secure)
	}
	return ok
}

// redactCookie keeps a Set-Cookie's attributes and drops its value (a hash of a pod address).
func redactCookie(raw string) string {
	name, rest, _ := strings.Cut(raw, "=")
	_, attrs, _ := strings.Cut(rest, ";")
	return name + "=…;" + attrs
}

// deletePinnedPod logs in 20 users, deletes the pod the first one is pinned to (gracefully,
// as a rollout or a drain would), and counts the sessions of that pod that are gone when
// their users come back with their cookies.
func (e *env) deletePinnedPod(t *testing.T, r *route) (pinned, lost int) {
	t.Helper()
	ctx := context.Background()
	users := make([]*jar, 0, 20)
	for range 20 {
		j := r.login(t)
		if _, err := r.session(j); err != nil { // counter 1, and the cookie proven to work
			t.Fatalf("%s: %v", r.sc.Name, err)
		}
		users = append(users, j)
	}
	victim := users[0].instance
	var onVictim []*jar
	for _, j := range users {
		if j.instance == victim {
			onVictim = append(onVictim, j)
		}
	}
	pinned = len(onVictim)
	logf("routing %s: deleting pod %s, to which %d of %d users are pinned", r.sc.Name, victim, pinned, len(users))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: r.sc.Namespace, Name: victim}}
	if err := e.c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := poll(2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}); err != nil {
		t.Fatalf("pod %s not gone: %v", victim, err)
	}
	e.waitSC(t, r.sc.Namespace, r.sc.Name, 3*time.Minute, "Ready=True again", isReady)
	for _, j := range onVictim {
		before := j.counter
		var s sessionBody
		var err error
		for range 20 { // a 5xx while Traefik drops the endpoint is not a verdict
			if s, err = r.session(j); err == nil || strings.Contains(err.Error(), strconv.Itoa(http.StatusUnauthorized)) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		switch {
		case err != nil && strings.Contains(err.Error(), strconv.Itoa(http.StatusUnauthorized)):
			lost++
		case err != nil:
			t.Errorf("%s: a user of the deleted pod: %v", r.sc.Name, err)
		case s.Instance == victim:
			t.Errorf("%s: still served by the deleted pod %s", r.sc.Name, victim)
		case s.Counter != before+1:
			t.Errorf("%s: counter %d after %d: the session went back", r.sc.Name, s.Counter, before)
			lost++
		}
	}
	logf("routing %s: %d of %d sessions of the deleted pod lost", r.sc.Name, lost, pinned)
	return pinned, lost
}
