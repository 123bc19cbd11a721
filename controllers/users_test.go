package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// fakeUsers plays store.SyncUsers: every address holds the users unless its namespace is
// failing (the store unreachable).
type fakeUsers struct {
	mu      sync.Mutex
	failing map[string]bool
	calls   map[string]int
}

func (f *fakeUsers) sync(_ context.Context, t store.UsersTarget) (store.UsersSync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := append(append([]string{}, t.Servers...), t.Sentinels...)
	for ns, fail := range f.failing {
		if fail && len(all) > 0 && strings.Contains(all[0], "."+ns+".svc.") {
			return store.UsersSync{}, fmt.Errorf("%s: connection refused", all[0])
		}
	}
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	for _, a := range all {
		f.calls[a]++
	}
	return store.UsersSync{Synced: all}, nil
}

func (f *fakeUsers) fail(ns string, on bool) {
	f.mu.Lock()
	f.failing[ns] = on
	f.mu.Unlock()
}

func appHashes(t *testing.T, ns string) []string {
	t.Helper()
	s := &corev1.Secret{}
	if err := get(t, ns, "shop-store-users", s); err != nil {
		t.Fatal(err)
	}
	return parseAccepted(string(s.Data[render.ServerUsersKey]))["app-web"]
}

func podVersion(t *testing.T, ns string) string {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := get(t, ns, "shop-web", d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Annotations[render.AnnotationPasswordVersion]
}

// TestPasswordRotation: the rotate-password annotation adds a new password beside the
// old one, rolls the app only once the store accepts it, keeps the old one while an app
// pod uses it, then drops it; the store's pod templates never change.
func TestPasswordRotation(t *testing.T) {
	ns := namespace(t)
	sc := create(t, storeCluster(ns))
	waitChildren(t, ns, storeChildren())
	auth := &corev1.Secret{}
	if err := get(t, ns, "shop-store-auth", auth); err != nil {
		t.Fatal(err)
	}
	oldPW := string(auth.Data["web.password"])
	oldHash := render.PasswordHash(oldPW)
	oldVersion := render.PasswordVersion(oldHash)
	if v := podVersion(t, ns); v != oldVersion {
		t.Fatalf("deployment password version %q, want %q", v, oldVersion)
	}
	storeHash := func() string {
		s := &appsv1.StatefulSet{}
		if err := get(t, ns, "shop-store", s); err != nil {
			t.Fatal(err)
		}
		return s.Spec.Template.Annotations[render.AnnotationConfigHash]
	}
	before := storeHash()
	// An app pod started with the old password (envtest runs no kubelet: the test is it).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-web-old", Namespace: ns, Labels: render.AppSelector(sc, "web"),
			Annotations: map[string]string{render.AnnotationPasswordVersion: oldVersion}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/shop:1.4"}}},
	}
	if err := k8s.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}

	// The store cannot be reached: the new password is added to the Secret, never to the app.
	users.fail(ns, true)
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		metav1.SetMetaDataAnnotation(&sc.ObjectMeta, sessionv1.AnnotationRotatePassword, "2026-12-03")
		return k8s.Update(context.Background(), sc)
	})
	var newHash string
	eventually(t, 20*time.Second, func() error {
		h := appHashes(t, ns)
		if len(h) != 2 || h[0] != oldHash {
			return fmt.Errorf("accepted hashes %v", h)
		}
		newHash = h[1]
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		if r := sc.Status.Store.PasswordRotation; r == nil || r.Phase != sessionv1.RotationAddingPassword {
			return fmt.Errorf("rotation %+v", r)
		}
		return nil
	})
	if v := podVersion(t, ns); v != oldVersion {
		t.Fatalf("the app rolled to password %s before the store accepted it", v)
	}

	// The store answers: the app rolls, the old password stays while the old pod runs.
	users.fail(ns, false)
	newVersion := render.PasswordVersion(newHash)
	eventually(t, 20*time.Second, func() error {
		if v := podVersion(t, ns); v != newVersion {
			return fmt.Errorf("deployment password version %s", v)
		}
		return nil
	})
	if err := get(t, ns, "shop-store-auth", auth); err != nil {
		t.Fatal(err)
	}
	if render.PasswordHash(string(auth.Data["web.password"])) != newHash || auth.Annotations[render.AnnotationRotationHandled] != "2026-12-03" {
		t.Fatalf("auth secret not rotated: handled %q", auth.Annotations[render.AnnotationRotationHandled])
	}
	time.Sleep(3 * time.Second) // a few passes
	if h := appHashes(t, ns); len(h) != 2 {
		t.Fatalf("old password dropped while a pod uses it: %v", h)
	}
	if err := get(t, ns, "shop", sc); err != nil {
		t.Fatal(err)
	}
	if r := sc.Status.Store.PasswordRotation; r == nil || r.Phase != sessionv1.RotationRollingApps || r.FinishedAt != nil ||
		len(r.Users) != 1 || r.Users[0] != "app-web" {
		t.Fatalf("rotation status %+v", r)
	}

	// The old pod goes: the old password is dropped and the rotation finishes.
	if err := k8s.Delete(context.Background(), pod, &client.DeleteOptions{GracePeriodSeconds: ptrInt64(0)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if h := appHashes(t, ns); len(h) != 1 || h[0] != newHash {
			return fmt.Errorf("accepted hashes %v", h)
		}
		if err := get(t, ns, "shop", sc); err != nil {
			return err
		}
		if r := sc.Status.Store.PasswordRotation; r == nil || r.Phase != sessionv1.RotationFinished || r.FinishedAt == nil {
			return fmt.Errorf("rotation %+v", r)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error { _, err := eventWith(t, ns, sessionv1.EventPasswordRotated); return err })
	if sc.Status.Store.UsersRevision == "" {
		t.Error("no users revision in status")
	}
	if after := storeHash(); after != before {
		t.Error("the rotation rolled the store")
	}
	if raw := fmt.Sprintf("%+v", sc.Status); strings.Contains(raw, oldPW) || strings.Contains(raw, string(auth.Data["web.password"])) {
		t.Error("a password in status")
	}
}

func ptrInt64(v int64) *int64 { return &v }

// TestUsersSecretDeleted: the internal users' passwords cannot be recovered once their
// Secret is gone, so the operator stops and says so rather than lock itself out of a
// running store; deleting the StatefulSets starts the store over with new ones.
func TestUsersSecretDeleted(t *testing.T) {
	ns := namespace(t)
	create(t, storeCluster(ns))
	waitChildren(t, ns, storeChildren())
	sts := &appsv1.StatefulSet{}
	if err := get(t, ns, "shop-store", sts); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-store-users"}}); err != nil {
		t.Fatal(err)
	}
	poke(t, ns, "shop")
	sc := waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionTrue, sessionv1.ReasonUsersSecretMissing)
	if c := meta.FindStatusCondition(sc.Status.Conditions, sessionv1.ConditionDegraded); !strings.Contains(c.Message, "shop-store-users") {
		t.Errorf("message: %s", c.Message)
	}
	if err := get(t, ns, "shop-store-users", &corev1.Secret{}); err == nil {
		t.Error("new internal passwords made for a running store")
	}
	after := &appsv1.StatefulSet{}
	if err := get(t, ns, "shop-store", after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != sts.ResourceVersion {
		t.Error("the store's StatefulSet was changed")
	}
	for _, name := range []string{"shop-store", "shop-sentinel"} {
		if err := k8s.Delete(context.Background(), &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	poke(t, ns, "shop")
	waitChildren(t, ns, storeChildren())
	waitCondition(t, ns, "shop", sessionv1.ConditionDegraded, metav1.ConditionFalse, sessionv1.ReasonAsExpected)
}
