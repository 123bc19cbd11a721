package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// Affinity annotation keys, in each controller's own spelling.
const (
	nginxPrefix   = "nginx.ingress.kubernetes.io/"
	haproxyPrefix = "haproxy-ingress.github.io/"
	traefikPrefix = "traefik.ingress.kubernetes.io/service.sticky.cookie"
)

// sticky reports whether the load balancer should pin users.
func (b *builder) sticky() bool { return b.spec.Mode == sessionv1.ModeSticky && b.spec.Sticky != nil }

// cookieName is the affinity cookie of one app. Several apps under one host each get their
// own, since one cookie cannot pin a user to a pod of two apps at once.
func (b *builder) cookieName(app *sessionv1.AppSpec) string {
	name := b.spec.Sticky.CookieName
	if len(b.spec.Apps) > 1 {
		name += "-" + app.Name
	}
	return name
}

// cookieSecure is the Secure attribute: as asked, else on when the ingress terminates TLS.
func (b *builder) cookieSecure() bool {
	if s := b.spec.Sticky.Secure; s != nil {
		return *s
	}
	return b.spec.Ingress != nil && b.spec.Ingress.TLS != nil
}

func (b *builder) cookieMaxAge() int64 { return int64(b.spec.Sticky.MaxAge.Duration / time.Second) }

// ingress is one Ingress per app, so each app's affinity cookie is scoped to its path.
func (b *builder) ingress(app *sessionv1.AppSpec) *networkingv1.Ingress {
	in := b.spec.Ingress
	pathType := networkingv1.PathTypePrefix
	ann := map[string]string{}
	for k, v := range in.Annotations {
		ann[k] = v
	}
	if b.sticky() {
		for k, v := range b.ingressAffinity(app) {
			ann[k] = v
		}
	}
	ing := &networkingv1.Ingress{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "Ingress"),
		ObjectMeta: b.meta(b.names.App(app.Name), ComponentRouting, app.Name),
		Spec: networkingv1.IngressSpec{
			IngressClassName: in.ClassName,
			Rules: []networkingv1.IngressRule{{
				Host: in.Host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     app.Path,
						PathType: &pathType,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: b.names.App(app.Name),
							Port: networkingv1.ServiceBackendPort{Name: "http"},
						}},
					}},
				}},
			}},
		},
	}
	if len(ann) > 0 {
		ing.Annotations = ann
	}
	if in.TLS != nil {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{in.Host}, SecretName: in.TLS.SecretName}}
	}
	return ing
}

// ingressAffinity is cookie affinity in the Ingress controller's dialect. Traefik reads
// it from the Service instead (serviceAffinity).
func (b *builder) ingressAffinity(app *sessionv1.AppSpec) map[string]string {
	sk := b.spec.Sticky
	maxAge := strconv.FormatInt(b.cookieMaxAge(), 10)
	switch b.spec.Ingress.Controller {
	case sessionv1.ControllerIngressNginx:
		return map[string]string{
			nginxPrefix + "affinity":                "cookie",
			nginxPrefix + "affinity-mode":           strings.ToLower(string(sk.Mode)),
			nginxPrefix + "session-cookie-name":     b.cookieName(app),
			nginxPrefix + "session-cookie-max-age":  maxAge,
			nginxPrefix + "session-cookie-expires":  maxAge,
			nginxPrefix + "session-cookie-path":     app.Path,
			nginxPrefix + "session-cookie-samesite": string(sk.SameSite),
			nginxPrefix + "session-cookie-secure":   strconv.FormatBool(b.cookieSecure()),
		}
	case sessionv1.ControllerHAProxy:
		return map[string]string{
			haproxyPrefix + "affinity":                "cookie",
			haproxyPrefix + "session-cookie-name":     b.cookieName(app),
			haproxyPrefix + "session-cookie-strategy": "insert",
			haproxyPrefix + "session-cookie-keywords": haproxyCookieKeywords(sk, b.cookieSecure()),
		}
	}
	return nil
}

func haproxyCookieKeywords(sk *sessionv1.StickySpec, secure bool) string {
	kw := []string{"indirect", "nocache", "httponly", "attr SameSite=" + string(sk.SameSite)}
	if secure {
		kw = append(kw, "secure")
	}
	return strings.Join(kw, " ")
}

// serviceAffinity is what the app Service carries for the load balancer: Traefik's sticky
// cookie annotations live on the Service, not the Ingress. The cookie is scoped to the
// app's path, as with the other controllers. sticky.mode has no Traefik equivalent:
// Traefik's cookie names a pod and keeps the user there while it lives (Persistent), and
// re-pins only when that pod is gone, whichever mode is asked.
func (b *builder) serviceAffinity(app *sessionv1.AppSpec) map[string]string {
	if !b.sticky() || b.spec.Ingress == nil || b.spec.Ingress.Controller != sessionv1.ControllerTraefik {
		return nil
	}
	path := app.Path
	if path == "" {
		path = "/"
	}
	return map[string]string{
		traefikPrefix + ".path":     path,
		traefikPrefix:               "true",
		traefikPrefix + ".name":     b.cookieName(app),
		traefikPrefix + ".maxage":   strconv.FormatInt(b.cookieMaxAge(), 10),
		traefikPrefix + ".secure":   strconv.FormatBool(b.cookieSecure()),
		traefikPrefix + ".httponly": "true",
		traefikPrefix + ".samesite": strings.ToLower(string(b.spec.Sticky.SameSite)),
	}
}

// httpRoute is the Gateway API form: one route, a rule per app, and in Sticky mode each
// rule's sessionPersistence (an experimental-channel field).
func (b *builder) httpRoute() *gatewayv1.HTTPRoute {
	in := b.spec.Ingress
	route := &gatewayv1.HTTPRoute{
		TypeMeta:   typeMeta("gateway.networking.k8s.io/v1", "HTTPRoute"),
		ObjectMeta: b.meta(b.names.Cluster, ComponentRouting, "session-cluster"),
		Spec: gatewayv1.HTTPRouteSpec{
			Hostnames: []gatewayv1.Hostname{gatewayv1.Hostname(in.Host)},
		},
	}
	if len(in.Annotations) > 0 {
		route.Annotations = map[string]string{}
		for k, v := range in.Annotations {
			route.Annotations[k] = v
		}
	}
	for _, p := range in.ParentRefs {
		ref := gatewayv1.ParentReference{Name: gatewayv1.ObjectName(p.Name)}
		if p.Namespace != "" {
			ns := gatewayv1.Namespace(p.Namespace)
			ref.Namespace = &ns
		}
		if p.SectionName != "" {
			sn := gatewayv1.SectionName(p.SectionName)
			ref.SectionName = &sn
		}
		route.Spec.ParentRefs = append(route.Spec.ParentRefs, ref)
	}
	for i := range b.spec.Apps {
		app := &b.spec.Apps[i]
		prefix := gatewayv1.PathMatchPathPrefix
		port := gatewayv1.PortNumber(app.Port)
		rule := gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: &app.Path}}},
			BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(b.names.App(app.Name)), Port: &port},
			}}},
		}
		if b.sticky() && b.in.GatewaySessionPersistence {
			cookie := gatewayv1.CookieBasedSessionPersistence
			name := b.cookieName(app)
			timeout := gatewayv1.Duration(gatewayDuration(b.spec.Sticky.MaxAge.Duration))
			lifetime := gatewayv1.PermanentCookieLifetimeType
			rule.SessionPersistence = &gatewayv1.SessionPersistence{
				SessionName: &name, Type: &cookie, AbsoluteTimeout: &timeout,
				CookieConfig: &gatewayv1.CookieConfig{LifetimeType: &lifetime},
			}
		}
		route.Spec.Rules = append(route.Spec.Rules, rule)
	}
	return route
}

// gatewayDuration spells d the way Gateway API durations must be: whole units, at most
// five digits each ("1h", "90m", "3600s").
func gatewayDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	if d%time.Minute == 0 && d/time.Minute < 100000 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	return fmt.Sprintf("%dh%dm%ds", h, m, s)
}

// URL is where users reach the apps, or "" without an ingress.
func URL(spec *sessionv1.SessionClusterSpec) string {
	in := spec.Ingress
	if in == nil {
		return ""
	}
	scheme := "http"
	if in.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + in.Host
}
