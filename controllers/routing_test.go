package controllers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

func stickyCluster(ns string, controller sessionv1.IngressController) *sessionv1.SessionCluster {
	return &sessionv1.SessionCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: sessionv1.SessionClusterSpec{
			Mode: sessionv1.ModeSticky,
			Apps: []sessionv1.AppSpec{{Name: "web", Image: "example/shop:1.4", Replicas: ptr.To[int32](2)}},
			Sticky: &sessionv1.StickySpec{
				CookieName: "route", MaxAge: &metav1.Duration{Duration: 2 * time.Hour},
				Mode: sessionv1.StickyPersistent, SameSite: sessionv1.SameSiteStrict,
			},
			Ingress: &sessionv1.IngressSpec{
				Host: "shop.example.com", ClassName: ptr.To("public"), Controller: controller,
				TLS:         &sessionv1.IngressTLS{SecretName: "shop-tls"},
				Annotations: map[string]string{"example.com/team": "shop", "nginx.ingress.kubernetes.io/affinity": "user-value-loses"},
			},
		},
	}
}

// TestAffinityInEachControllersDialect checks the exact keys and values per controller.
func TestAffinityInEachControllersDialect(t *testing.T) {
	cases := map[sessionv1.IngressController]struct {
		ingress map[string]string
		service map[string]string
	}{
		sessionv1.ControllerIngressNginx: {ingress: map[string]string{
			"nginx.ingress.kubernetes.io/affinity":                "cookie",
			"nginx.ingress.kubernetes.io/affinity-mode":           "persistent",
			"nginx.ingress.kubernetes.io/session-cookie-name":     "route",
			"nginx.ingress.kubernetes.io/session-cookie-max-age":  "7200",
			"nginx.ingress.kubernetes.io/session-cookie-expires":  "7200",
			"nginx.ingress.kubernetes.io/session-cookie-path":     "/",
			"nginx.ingress.kubernetes.io/session-cookie-samesite": "Strict",
			"nginx.ingress.kubernetes.io/session-cookie-secure":   "true",
			"example.com/team": "shop",
		}},
		sessionv1.ControllerTraefik: {
			ingress: map[string]string{"example.com/team": "shop"},
			service: map[string]string{
				"traefik.ingress.kubernetes.io/service.sticky.cookie":          "true",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.name":     "route",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.maxage":   "7200",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.secure":   "true",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.httponly": "true",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.samesite": "strict",
				"traefik.ingress.kubernetes.io/service.sticky.cookie.path":     "/",
			},
		},
		sessionv1.ControllerHAProxy: {ingress: map[string]string{
			"haproxy-ingress.github.io/affinity":                "cookie",
			"haproxy-ingress.github.io/session-cookie-name":     "route",
			"haproxy-ingress.github.io/session-cookie-strategy": "insert",
			"haproxy-ingress.github.io/session-cookie-keywords": "indirect nocache httponly attr SameSite=Strict secure",
		}},
	}
	for controller, want := range cases {
		t.Run(string(controller), func(t *testing.T) {
			ns := namespace(t)
			create(t, stickyCluster(ns, controller))
			ing := &networkingv1.Ingress{}
			svc := &corev1.Service{}
			eventually(t, 20*time.Second, func() error {
				if err := get(t, ns, "shop-web", ing); err != nil {
					return err
				}
				return get(t, ns, "shop-web", svc)
			})
			for k, v := range want.ingress {
				if got := ing.Annotations[k]; got != v {
					t.Errorf("ingress %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range want.service {
				if got := svc.Annotations[k]; got != v {
					t.Errorf("service %s = %q, want %q", k, got, v)
				}
			}
			if controller != sessionv1.ControllerTraefik && len(svc.Annotations) > 1 {
				t.Errorf("service carries affinity for %s: %v", controller, svc.Annotations)
			}
			if controller == sessionv1.ControllerTraefik && ing.Annotations["nginx.ingress.kubernetes.io/affinity"] != "user-value-loses" {
				t.Errorf("user annotations must pass through untouched where the operator sets none")
			}
			rule := ing.Spec.Rules[0]
			if rule.Host != "shop.example.com" || *ing.Spec.IngressClassName != "public" || ing.Spec.TLS[0].SecretName != "shop-tls" ||
				rule.HTTP.Paths[0].Backend.Service.Name != "shop-web" || rule.HTTP.Paths[0].Path != "/" {
				t.Errorf("ingress spec %+v", ing.Spec)
			}
			waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)
			publishIngressAddress(t, ns, "shop-web", "10.0.0.7")
			sc := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonReady)
			if sc.Status.URL != "https://shop.example.com" {
				t.Errorf("status.url %q", sc.Status.URL)
			}
		})
	}
}

func TestStoreModeIngressPinsNobody(t *testing.T) {
	ns := namespace(t)
	sc := storeCluster(ns)
	sc.Spec.Ingress = &sessionv1.IngressSpec{Host: "shop.example.com", Annotations: map[string]string{"a/b": "c"}}
	sc.Spec.Apps = append(sc.Spec.Apps, sessionv1.AppSpec{Name: "api", Image: "example/api:1", Path: "/api"})
	create(t, sc)
	for app, path := range map[string]string{"web": "/", "api": "/api"} {
		ing := &networkingv1.Ingress{}
		eventually(t, 20*time.Second, func() error { return get(t, ns, "shop-"+app, ing) })
		if ing.Spec.Rules[0].HTTP.Paths[0].Path != path || ing.Annotations["a/b"] != "c" {
			t.Errorf("%s ingress %+v %v", app, ing.Spec.Rules, ing.Annotations)
		}
		for k := range ing.Annotations {
			if strings.Contains(k, "affinity") || strings.Contains(k, "cookie") {
				t.Errorf("%s: Store mode needs no affinity, got %s", app, k)
			}
		}
	}
	publishIngressAddress(t, ns, "shop-web", "10.0.0.7")
	publishIngressAddress(t, ns, "shop-api", "10.0.0.7")
	if got := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, "").Status.URL; got != "http://shop.example.com" {
		t.Errorf("url %q", got)
	}
}

func TestClientIPAffinityWithoutIngress(t *testing.T) {
	ns := namespace(t)
	sc := stickyCluster(ns, sessionv1.ControllerIngressNginx)
	sc.Spec.Ingress = nil
	sc.Spec.Sticky.ClientIP = &sessionv1.ClientIPAffinity{Timeout: &metav1.Duration{Duration: time.Hour}}
	create(t, sc)
	svc := &corev1.Service{}
	eventually(t, 20*time.Second, func() error { return get(t, ns, "shop-web", svc) })
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP || *svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 3600 {
		t.Errorf("service affinity %s %+v", svc.Spec.SessionAffinity, svc.Spec.SessionAffinityConfig)
	}
	if c := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonNotRequired); c.Status.URL != "" {
		t.Errorf("url without ingress: %q", c.Status.URL)
	}
}

// TestGatewayAPI runs without the Gateway API CRDs first, then installs the experimental
// channel's HTTPRoute CRD from the gateway-api module and expects the route to follow.
func TestGatewayAPI(t *testing.T) {
	ns := namespace(t)
	sc := stickyCluster(ns, sessionv1.ControllerGatewayAPI)
	sc.Spec.Ingress.TLS = nil
	sc.Spec.Ingress.ParentRefs = []sessionv1.GatewayParentRef{{Name: "public", Namespace: "gateways", SectionName: "https"}}
	create(t, sc)

	got := waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonGatewayAPIMissing)
	if c := meta.FindStatusCondition(got.Status.Conditions, sessionv1.ConditionDegraded); c.Status != metav1.ConditionFalse {
		t.Errorf("a missing Gateway API must not fail the whole reconcile: %+v", c)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, sessionv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != sessionv1.ReasonGatewayAPIMissing {
		t.Errorf("Ready %+v", c)
	}
	eventually(t, 10*time.Second, func() error { _, err := eventWith(t, ns, sessionv1.ReasonGatewayAPIMissing); return err })
	if err := get(t, ns, "shop-web", &corev1.Service{}); err != nil {
		t.Errorf("the apps must still be made: %v", err)
	}

	// The standard channel's HTTPRoute has no sessionPersistence: the route is made
	// without it, the SessionCluster says users are not pinned, and passes stay idle.
	installHTTPRouteCRD(t, "standard")
	poke(t, ns, "shop")
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonSessionPersistenceUnsupported)
	if c, _ := condition(t, ns, "shop", sessionv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != sessionv1.ReasonSessionPersistenceUnsupported {
		t.Errorf("Ready with an HTTPRoute that cannot pin: %+v", c)
	}
	eventually(t, 10*time.Second, func() error {
		_, err := eventWith(t, ns, sessionv1.ReasonSessionPersistenceUnsupported)
		return err
	})
	standard := &gatewayv1.HTTPRoute{}
	eventually(t, 10*time.Second, func() error { return get(t, ns, "shop", standard) })
	if sp := standard.Spec.Rules[0].SessionPersistence; sp != nil {
		t.Errorf("sessionPersistence %+v on a standard-channel route", sp)
	}
	settle(t)
	writes, logged := managerWrites.Writes(), managerWrites.LoggedWrites()
	for range 3 {
		poke(t, ns, "shop")
		time.Sleep(300 * time.Millisecond)
	}
	settle(t)
	if got := managerWrites.Writes() - writes; got != 0 {
		t.Errorf("idle passes with a standard-channel HTTPRoute made %d writes: %v", got, managerWrites.WritesSince(logged))
	}

	installHTTPRouteCRD(t, "experimental")
	poke(t, ns, "shop")
	route := &gatewayv1.HTTPRoute{}
	eventually(t, 30*time.Second, func() error {
		if err := get(t, ns, "shop", route); err != nil {
			return err
		}
		if route.Spec.Rules[0].SessionPersistence == nil {
			return errors.New("no sessionPersistence yet")
		}
		return nil
	})
	if len(route.Spec.ParentRefs) != 1 || route.Spec.ParentRefs[0].Name != "public" || string(*route.Spec.ParentRefs[0].Namespace) != "gateways" ||
		string(*route.Spec.ParentRefs[0].SectionName) != "https" {
		t.Errorf("parentRefs %+v", route.Spec.ParentRefs)
	}
	if len(route.Spec.Hostnames) != 1 || route.Spec.Hostnames[0] != "shop.example.com" {
		t.Errorf("hostnames %v", route.Spec.Hostnames)
	}
	rule := route.Spec.Rules[0]
	sp := rule.SessionPersistence
	if sp == nil || *sp.SessionName != "route" || *sp.Type != gatewayv1.CookieBasedSessionPersistence || *sp.AbsoluteTimeout != "2h" ||
		sp.CookieConfig == nil || *sp.CookieConfig.LifetimeType != gatewayv1.PermanentCookieLifetimeType {
		t.Errorf("sessionPersistence %+v", sp)
	}
	if string(rule.BackendRefs[0].Name) != "shop-web" || *rule.BackendRefs[0].Port != 8080 {
		t.Errorf("backend %+v", rule.BackendRefs)
	}
	if err := get(t, ns, "shop-web", &networkingv1.Ingress{}); err == nil {
		t.Error("GatewayAPI must not also make an Ingress")
	}
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionFalse, sessionv1.ReasonRoutingPending)
	reportRouteParents(t, ns, "shop", metav1.ConditionTrue, metav1.ConditionTrue)
	waitCondition(t, ns, "shop", sessionv1.ConditionRoutingReady, metav1.ConditionTrue, sessionv1.ReasonReady)

	// The CRD appeared after the manager started, and HTTPRoutes are watched from then on:
	// a deleted route comes back with no other event (this Sticky cluster has no store, so
	// nothing requeues it).
	if err := k8s.Delete(context.Background(), route); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		again := &gatewayv1.HTTPRoute{}
		if err := get(t, ns, "shop", again); err != nil {
			return err
		}
		if again.UID == route.UID {
			return errors.New("the deleted route is still there")
		}
		return nil
	})

	// Back to an Ingress controller: the route goes, an Ingress comes.
	updateSpec(t, ns, func(s *sessionv1.SessionClusterSpec) {
		s.Ingress.Controller = sessionv1.ControllerIngressNginx
		s.Ingress.ParentRefs = nil
	})
	eventually(t, 20*time.Second, func() error {
		if err := get(t, ns, "shop", &gatewayv1.HTTPRoute{}); err == nil {
			return errors.New("HTTPRoute still there")
		}
		return get(t, ns, "shop-web", &networkingv1.Ingress{})
	})
}

// installHTTPRouteCRD installs, or replaces, the HTTPRoute CRD of a Gateway API channel.
func installHTTPRouteCRD(t *testing.T, channel string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("locating the gateway-api module: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", channel, "gateway.networking.k8s.io_httproutes.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	old := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(context.Background(), ctrlKey(crd.Name), old); err == nil {
		crd.ResourceVersion = old.ResourceVersion
		if err := k8s.Update(context.Background(), crd); err != nil {
			t.Fatal(err)
		}
	} else if err := k8s.Create(context.Background(), crd); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), ctrlKey(crd.Name), crd); err != nil {
			return err
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("CRD %s not established", crd.Name)
	})
}
