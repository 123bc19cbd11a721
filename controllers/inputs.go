package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// readInputs gathers what rendering needs from the cluster: the store password and
// whether the Gateway API is installed.
func (r *SessionClusterReconciler) readInputs(ctx context.Context, p *pass) error {
	p.inputs.GatewayAPI = r.gatewayAPIInstalled()
	if p.inputs.GatewayAPI {
		p.inputs.GatewaySessionPersistence = r.GatewaySessionPersistence == nil || r.GatewaySessionPersistence()
		if err := r.watchHTTPRoutes(ctx); err != nil {
			return err
		}
	}
	if !p.spec.HasStore() {
		return nil
	}
	if p.spec.Store.Auth.ExistingSecret != "" {
		return r.readUserPassword(ctx, p)
	}
	return r.readGeneratedPassword(ctx, p)
}

// readUserPassword reads the Secret the user named. It is not the operator's, so it is
// not in the label-selected cache: one uncached read per pass with a user password.
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
	p.inputs.Password = pw
	p.inputs.PasswordVersion = s.ResourceVersion
	return nil
}

// readGeneratedPassword reuses the password of the operator's auth Secret, or makes one.
func (r *SessionClusterReconciler) readGeneratedPassword(ctx context.Context, p *pass) error {
	key := client.ObjectKey{Namespace: p.sc.Namespace, Name: render.NamesFor(p.sc, r.Render.ClusterDomain).AuthSecret()}
	s := &corev1.Secret{}
	err := r.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		// The cache may not have seen a Secret created a moment ago; regenerating then
		// would change the password under running pods.
		err = r.APIReader.Get(ctx, key, s)
	}
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading auth secret %s: %w", key.Name, err)
	case !metav1.IsControlledBy(s, p.sc):
		// The conflict check reports it with every other stranger's object.
	default:
		if pw := string(s.Data[render.PasswordKey]); pw != "" {
			p.inputs.Password = pw
			p.inputs.PasswordVersion = render.Hash(pw)
			return nil
		}
	}
	pw, err := newPassword()
	if err != nil {
		return fmt.Errorf("generating store password: %w", err)
	}
	p.inputs.Password = pw
	// A hash of 187 random bits reveals nothing, and unlike a resourceVersion it is known
	// before the Secret is written, so new pods do not roll once the Secret exists.
	p.inputs.PasswordVersion = render.Hash(pw)
	return nil
}
