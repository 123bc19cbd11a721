package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// readInputs gathers what rendering needs from the cluster: the passwords of the store's
// users, the password hashes the store accepts, and whether the Gateway API is installed.
func (r *SessionClusterReconciler) readInputs(ctx context.Context, p *pass) error {
	p.inputs.GatewayAPI = r.gatewayAPIInstalled()
	if !p.spec.HasStore() {
		return nil
	}
	if err := r.readUsersSecret(ctx, p); err != nil {
		return err
	}
	if p.spec.Store.Auth.ExistingSecret != "" {
		return r.readUserPassword(ctx, p)
	}
	return r.readGeneratedPasswords(ctx, p)
}

// ownedSecret reads one of the operator's Secrets: from the cache, or around it when the
// cache has not seen one created a moment ago (regenerating a password then would change
// it under running pods). Nil when absent or someone else's (the conflict check reports
// a stranger's object).
func (r *SessionClusterReconciler) ownedSecret(ctx context.Context, p *pass, name string) (*corev1.Secret, error) {
	key := client.ObjectKey{Namespace: p.sc.Namespace, Name: name}
	s := &corev1.Secret{}
	err := r.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, s)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading secret %s: %w", name, err)
	case !metav1.IsControlledBy(s, p.sc):
		return nil, nil
	}
	return s, nil
}

// readUsersSecret reads the internal users' passwords (generating those missing) and the
// password hashes each app user accepts now, from the users Secret.
func (r *SessionClusterReconciler) readUsersSecret(ctx context.Context, p *pass) error {
	s, err := r.ownedSecret(ctx, p, render.NamesFor(p.sc, r.Render.ClusterDomain).UsersSecret())
	if err != nil {
		return err
	}
	if s == nil {
		// New internal passwords for a running store would lock the operator out and stall
		// the roll they start (new replicas cannot follow the old primary): say so instead.
		n := render.NamesFor(p.sc, r.Render.ClusterDomain)
		sts, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Store())
		if err != nil {
			return err
		}
		if sts != nil {
			p.problem = &problem{sessionv1.ReasonUsersSecretMissing, fmt.Sprintf(
				"Secret %s, which holds the passwords of the store's replication, sentinel and operator users, is gone while the store runs; "+
					"restore it, or delete the StatefulSets %s and %s to restart the store with new ones (claims, and the sessions on them, are kept)",
				n.UsersSecret(), n.Store(), n.Sentinel())}
			return nil
		}
	}
	get := func(k string) string {
		if s == nil {
			return ""
		}
		return string(s.Data[k])
	}
	in := &p.inputs.Internal
	for _, f := range []struct {
		pw  *string
		key string
	}{{&in.Operator, render.UserOperator}, {&in.Replication, render.UserReplication}, {&in.Sentinel, render.UserSentinel}} {
		if *f.pw = get(f.key); *f.pw == "" {
			if *f.pw, err = newPassword(); err != nil {
				return fmt.Errorf("generating the %s user's password: %w", f.key, err)
			}
		}
	}
	p.accepted = parseAccepted(get(render.ServerUsersKey))
	return nil
}

// parseAccepted reads the password hashes of each app user from ACL lines
// ("user app-web on #<hash> #<hash> ~* ...").
func parseAccepted(acl string) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(acl, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "user" || !strings.HasPrefix(f[1], render.AppUserPrefix) {
			continue
		}
		for _, tok := range f[2:] {
			if h, ok := strings.CutPrefix(tok, "#"); ok {
				out[f[1]] = append(out[f[1]], h)
			}
		}
	}
	return out
}

// readUserPassword reads the Secret the user named; its password is every app's. It is
// not the operator's, so it is not in the label-selected cache: one uncached read per pass.
func (r *SessionClusterReconciler) readUserPassword(ctx context.Context, p *pass) error {
	auth := p.spec.Store.Auth
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: p.sc.Namespace, Name: auth.ExistingSecret}, s)
	if apierrors.IsNotFound(err) {
		p.problem = &problem{sessionv1.ReasonAuthSecretInvalid,
			fmt.Sprintf("spec.store.auth.existingSecret: Secret %q not found in namespace %q", auth.ExistingSecret, p.sc.Namespace)}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading auth secret %s: %w", auth.ExistingSecret, err)
	}
	pw := string(s.Data[auth.ExistingSecretKey])
	if pw == "" {
		p.problem = &problem{sessionv1.ReasonAuthSecretInvalid,
			fmt.Sprintf("spec.store.auth.existingSecretKey: Secret %q has no key %q", auth.ExistingSecret, auth.ExistingSecretKey)}
		return nil
	}
	if msg := passwordProblem(pw); msg != "" {
		p.problem = &problem{sessionv1.ReasonAuthSecretInvalid,
			fmt.Sprintf("spec.store.auth.existingSecret: the password in Secret %q key %q %s", auth.ExistingSecret, auth.ExistingSecretKey, msg)}
		return nil
	}
	p.inputs.AppPasswords = map[string]string{}
	for _, app := range p.spec.Apps {
		p.inputs.AppPasswords[app.Name] = pw
	}
	return nil
}

// readGeneratedPasswords reuses each app's password from the operator's auth Secret, or
// makes one. The rotate-password annotation, at a value not yet acted on, makes new ones
// for every app; a deleted auth Secret does too. Either way the rotation that follows
// adds the new passwords live before any app uses them.
func (r *SessionClusterReconciler) readGeneratedPasswords(ctx context.Context, p *pass) error {
	s, err := r.ownedSecret(ctx, p, render.NamesFor(p.sc, r.Render.ClusterDomain).AuthSecret())
	if err != nil {
		return err
	}
	want := p.sc.Annotations[sessionv1.AnnotationRotatePassword]
	handled := ""
	if s != nil {
		handled = s.Annotations[render.AnnotationRotationHandled]
	}
	rotate := want != "" && want != handled
	if want != "" {
		handled = want
	}
	p.inputs.RotationHandled = handled
	p.inputs.AppPasswords = map[string]string{}
	for _, app := range p.spec.Apps {
		pw := ""
		if s != nil && !rotate {
			pw = string(s.Data[render.AppPasswordKey(app.Name)])
		}
		if pw == "" {
			if pw, err = newPassword(); err != nil {
				return fmt.Errorf("generating app %s's store password: %w", app.Name, err)
			}
		}
		p.inputs.AppPasswords[app.Name] = pw
	}
	return nil
}
