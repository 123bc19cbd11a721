package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/apply"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// syncUsers keeps the store's ACL users what the spec and the passwords say, live, and
// runs password rotations without a failed write or a store restart:
//  1. a new app password (a changed user Secret, a deleted generated Secret, the
//     rotate-password annotation) is added beside the old one: first in the users Secret
//     (a pod starting now boots with both), then live on every server and Sentinel;
//  2. only then does the app's pod template take the new password version, which rolls
//     the app onto it;
//  3. the old password is dropped, in the Secret and live, once no app pod that uses it
//     runs any more.
//
// The store's pods never restart for it: the users Secret is not part of their
// configuration hash. It runs before render, which then renders the app Deployments
// with the password versions decided here.
func (r *SessionClusterReconciler) syncUsers(ctx context.Context, p *pass) error {
	if p.problem != nil || !p.spec.HasStore() {
		return nil
	}
	current := map[string]string{}
	for _, app := range p.spec.Apps {
		current[render.AppUser(app.Name)] = render.PasswordHash(p.inputs.AppPasswords[app.Name])
	}
	rotating := false
	for user, h := range current {
		if old := p.accepted[user]; len(old) > 0 && (len(old) > 1 || old[0] != h) {
			rotating = true
		}
	}
	var inUse map[string][]string
	if rotating {
		var err error
		if inUse, err = r.passwordVersionsInUse(ctx, p); err != nil {
			return err
		}
	}
	p.inputs.Accepted = render.NextAccepted(current, p.accepted, inUse)

	d, err := render.Render(p.sc, r.Render, p.inputs)
	if err != nil {
		return fmt.Errorf("rendering users: %w", err)
	}
	n := render.NamesFor(p.sc, r.Render.ClusterDomain)
	usersSecret, err := findSecret(d, n.UsersSecret())
	if err != nil {
		return err
	}
	// The Secret first, so a pod starting from here on boots with these users.
	cur, claim, err := r.checkChild(ctx, p, usersSecret)
	if apply.IsConflict(err) {
		return nil // applyChildren reports the stranger's Secret
	}
	if err != nil {
		return fmt.Errorf("checking users secret: %w", err)
	}
	if claim == nil && cur == nil {
		// Free when read a moment ago (a conflict stands elsewhere, so the check read
		// first): claimed all the same, for applyChildren to take back.
		if claim, err = r.applier().Claim(ctx, usersSecret); err != nil {
			return fmt.Errorf("applying users secret: %w", err)
		}
		if claim == nil {
			return fmt.Errorf("users secret %s appeared while the pass ran", usersSecret.GetName())
		}
	}
	if claim != nil {
		p.claimed = append(p.claimed, claim)
	} else if _, err := r.applier().ApplyOver(ctx, usersSecret, cur); err != nil {
		return fmt.Errorf("applying users secret: %w", err)
	}
	p.written = map[string]string{describe(r.Client, usersSecret): apply.Intent(usersSecret)}
	p.usersRevision = d.Users.Revision
	prevRevision := ""
	if s := p.sc.Status.Store; s != nil {
		prevRevision = s.UsersRevision
	}
	live := prevRevision == d.Users.Revision && !rotating
	if !live {
		live, err = r.applyUsersLive(ctx, p, n, d.Users)
		if err != nil {
			log.FromContext(ctx).Info("store users not applied live yet", "reason", err.Error())
		}
	}
	if live {
		p.usersLive = d.Users.Revision
	} else {
		p.usersLive = prevRevision
		p.requeueSoon = true
	}

	// The apps' pods take a new password only once every server and Sentinel accepts it.
	p.inputs.PodPasswordVersions = map[string]string{}
	for _, app := range p.spec.Apps {
		want := render.PasswordVersion(current[render.AppUser(app.Name)])
		if live {
			p.inputs.PodPasswordVersions[app.Name] = want
			continue
		}
		have, err := r.deployedPasswordVersion(ctx, p, &app)
		if err != nil {
			return err
		}
		if have == "" {
			have = want // not deployed yet: no pod to keep
		}
		p.inputs.PodPasswordVersions[app.Name] = have
	}
	p.rotation = rotationStatus(p, current, rotating, live)
	if p.rotation != nil && p.rotation.Phase != sessionv1.RotationFinished {
		// Old pods leave without an event the operator watches; look again shortly.
		p.requeueSoon = true
	}
	return nil
}

// applyUsersLive applies the users on every server and Sentinel the StatefulSets may run.
// No StatefulSet yet means no pod: the Secret is all there is to update.
func (r *SessionClusterReconciler) applyUsersLive(ctx context.Context, p *pass, n render.Names, u *render.Users) (bool, error) {
	storeSet, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Store())
	if err != nil {
		return false, err
	}
	sentinelSet, err := r.getStatefulSet(ctx, p.sc.Namespace, n.Sentinel())
	if err != nil {
		return false, err
	}
	if storeSet == nil && sentinelSet == nil {
		return true, nil
	}
	t := store.UsersTarget{
		Username: render.UserOperator, Password: p.inputs.Internal.Operator,
		Managed: func(name string) bool { return strings.HasPrefix(name, render.AppUserPrefix) },
	}
	if storeSet != nil {
		t.Servers = render.HostPorts(n.StoreHosts(max(replicasOf(storeSet), render.StoreServers(p.spec.Store))), render.RedisPort)
	}
	if sentinelSet != nil {
		t.Sentinels = render.HostPorts(n.SentinelHosts(max(replicasOf(sentinelSet), p.spec.Store.Sentinel.Replicas)), render.SentinelPort)
	}
	for _, x := range u.Servers {
		t.ServerUsers = append(t.ServerUsers, x.SetUserArgs())
	}
	for _, x := range u.Sentinels {
		t.SentinelUsers = append(t.SentinelUsers, x.SetUserArgs())
	}
	sync := r.SyncUsers
	if sync == nil {
		sync = store.SyncUsers
	}
	res, err := sync(ctx, t)
	if err != nil {
		return false, err
	}
	return res.Complete(t), nil
}

func replicasOf(s *appsv1.StatefulSet) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}

// passwordVersionsInUse lists, by app user, the password versions of the app's pods that
// still exist, terminating ones included: they may still open connections. App pods are
// not in the operator's cache; this uncached list runs only during a rotation.
func (r *SessionClusterReconciler) passwordVersionsInUse(ctx context.Context, p *pass) (map[string][]string, error) {
	out := map[string][]string{}
	for _, app := range p.spec.Apps {
		pods := &corev1.PodList{}
		if err := r.APIReader.List(ctx, pods, client.InNamespace(p.sc.Namespace), client.MatchingLabels(render.PodSelector(p.sc, &app))); err != nil {
			return nil, fmt.Errorf("listing pods of app %s: %w", app.Name, err)
		}
		user := render.AppUser(app.Name)
		out[user] = []string{}
		for _, pod := range pods.Items {
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			if v := pod.Annotations[render.AnnotationPasswordVersion]; v != "" && !slices.Contains(out[user], v) {
				out[user] = append(out[user], v)
			}
		}
	}
	return out, nil
}

// deployedPasswordVersion is the password version of an app's pod template: its
// Deployment's, or its wired workload's.
func (r *SessionClusterReconciler) deployedPasswordVersion(ctx context.Context, p *pass, app *sessionv1.AppSpec) (string, error) {
	if ref := app.WorkloadRef; ref != nil {
		w, err := r.getWired(ctx, p.sc.Namespace, ref.Kind, ref.Name)
		if err != nil || w == nil {
			return "", err
		}
		tmpl, _, _ := workloadParts(w)
		return tmpl.Annotations[render.AnnotationPasswordVersion], nil
	}
	name := render.NamesFor(p.sc, r.Render.ClusterDomain).App(app.Name)
	d := &appsv1.Deployment{}
	err := r.Get(ctx, client.ObjectKey{Namespace: p.sc.Namespace, Name: name}, d)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading deployment %s: %w", name, err)
	}
	return d.Spec.Template.Annotations[render.AnnotationPasswordVersion], nil
}

// rotationStatus says where the latest rotation stands after this pass.
func rotationStatus(p *pass, current map[string]string, rotating, live bool) *sessionv1.PasswordRotation {
	var prev *sessionv1.PasswordRotation
	if s := p.sc.Status.Store; s != nil && s.PasswordRotation != nil {
		prev = s.PasswordRotation.DeepCopy()
	}
	if !rotating {
		if prev != nil && prev.Phase != sessionv1.RotationFinished && live {
			prev.Phase = sessionv1.RotationFinished
			t := metav1.NewTime(p.now)
			prev.FinishedAt = &t
		}
		return prev
	}
	out := prev
	if out == nil || out.Phase == sessionv1.RotationFinished {
		out = &sessionv1.PasswordRotation{StartedAt: metav1.NewTime(p.now)}
	}
	out.FinishedAt = nil
	var users []string
	twoPasswords := false
	for user, h := range current {
		acc := p.inputs.Accepted[user]
		if len(acc) > 1 || len(p.accepted[user]) > 1 || (len(p.accepted[user]) == 1 && p.accepted[user][0] != h) {
			users = append(users, user)
		}
		if len(acc) > 1 {
			twoPasswords = true
		}
	}
	slices.Sort(users)
	out.Users = slices.Compact(append(out.Users, users...))
	slices.Sort(out.Users)
	out.Users = slices.Compact(out.Users)
	switch {
	case twoPasswords && !live:
		out.Phase = sessionv1.RotationAddingPassword
	case twoPasswords:
		out.Phase = sessionv1.RotationRollingApps
	default:
		// Every old password is out of the Secret; it leaves the servers with this pass's
		// live apply, and the next pass, no longer rotating, calls it finished.
		out.Phase = sessionv1.RotationDroppingPassword
	}
	return out
}

func findSecret(d *render.Desired, name string) (*corev1.Secret, error) {
	for _, o := range d.Objects {
		if s, ok := o.(*corev1.Secret); ok && s.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no secret %s rendered", name)
}

// rotationFinished reports whether a rotation finished between the previous status and
// the new one.
func rotationFinished(prev, now *sessionv1.StoreStatus) bool {
	if now == nil || now.PasswordRotation == nil || now.PasswordRotation.Phase != sessionv1.RotationFinished || now.PasswordRotation.FinishedAt == nil {
		return false
	}
	return prev == nil || prev.PasswordRotation == nil || prev.PasswordRotation.Phase != sessionv1.RotationFinished
}
