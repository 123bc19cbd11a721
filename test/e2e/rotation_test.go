//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
)

// rotationFacts is the live password rotation on the real cluster.
type rotationFacts struct {
	Seconds        float64 `json:"seconds"` // annotation to status Finished
	Requests       int     `json:"requests"`
	Failed         int     `json:"failed"`
	WentBackwards  int     `json:"went_backwards"`
	Unknown        int     `json:"unknown_sessions"`
	StoreRestarts  int     `json:"store_restarts"`
	AppRolled      bool    `json:"app_rolled"`
	Phase          string  `json:"phase"`
	PasswordsAfter int     `json:"passwords_after"`
}

// testPasswordRotation asks for a new app password with the rotate-password annotation
// while four clients write sessions with WAIT 1 through the app Service: the app rolls
// onto the new password, the store's pods are not restarted, no write fails and none is
// lost, and the status reports the rotation finished.
func testPasswordRotation(t *testing.T) {
	ctx := context.Background()
	storePods := func() map[string]int32 {
		out := map[string]int32{}
		pods, err := e.podsOf(ctx, nsStore, storeSC)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			if c := p.Labels[render.LabelComponent]; c != render.ComponentStore && c != render.ComponentSentinel {
				continue
			}
			var restarts int32
			for _, cs := range p.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			out[string(p.UID)] = restarts
		}
		return out
	}
	before := storePods()
	dep := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-web"}, dep); err != nil {
		t.Fatal(err)
	}
	oldVersion := dep.Spec.Template.Annotations[render.AnnotationPasswordVersion]

	const run = 100 * time.Second
	done := make(chan runOut, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, run+time.Minute)
		defer cancel()
		out, err := e.sessionload(rctx, nsStore, "run", "-urls", fmt.Sprintf("http://%s-web:8080", storeSC),
			"-in", "/work/s.json", "-duration", run.String(), "-clients", "4", "-interval", "10ms", "-timeout", "3s")
		done <- runOut{out, err}
	}()
	time.Sleep(5 * time.Second)

	start := time.Now()
	if _, err := e.kc("-n", nsStore, "annotate", "sessioncluster", storeSC, sessionv1.AnnotationRotatePassword+"=e2e-1", "--overwrite"); err != nil {
		t.Fatal(err)
	}
	f := rotationFacts{}
	var last *sessionv1.SessionCluster
	err := poll(4*time.Minute, time.Second, func() (bool, error) {
		sc, err := e.getSC(ctx, nsStore, storeSC)
		if err != nil {
			return false, err
		}
		last = sc
		r := sc.Status.Store.PasswordRotation
		return r != nil && r.Phase == sessionv1.RotationFinished && r.FinishedAt != nil && r.FinishedAt.Time.After(start.Add(-time.Second)), nil
	})
	if last != nil && last.Status.Store != nil && last.Status.Store.PasswordRotation != nil {
		f.Phase = string(last.Status.Store.PasswordRotation.Phase)
	}
	if err != nil {
		t.Errorf("rotation did not finish: %v; status %+v", err, last.Status.Store.PasswordRotation)
	} else {
		f.Seconds = secs(time.Since(start))
		logf("password rotation finished after %.1f s", f.Seconds)
	}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-web"}, dep); err != nil {
		t.Fatal(err)
	}
	f.AppRolled = dep.Spec.Template.Annotations[render.AnnotationPasswordVersion] != oldVersion
	users := &corev1.Secret{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: nsStore, Name: storeSC + "-store-users"}, users); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(users.Data[render.ServerUsersKey]), "\n") {
		if strings.HasPrefix(l, "user app-web ") {
			f.PasswordsAfter = strings.Count(l, " #")
		}
	}

	r := <-done
	sum := finishedRun(t, r)
	f.Requests, f.Failed, f.WentBackwards, f.Unknown = sum.Requests, sum.Failed, sum.WentBackwards, sum.UnknownSessions
	after := storePods()
	for uid, n := range before {
		if m, ok := after[uid]; !ok || m != n {
			f.StoreRestarts++
		}
	}
	e.res.Rotation = &f
	logf("password rotation: %d requests, %d failed, went backwards %d, store restarts %d, app rolled %v, app-web passwords after %d",
		f.Requests, f.Failed, f.WentBackwards, f.StoreRestarts, f.AppRolled, f.PasswordsAfter)
	if f.Failed > 0 || f.WentBackwards > 0 || f.Unknown > 0 || f.StoreRestarts > 0 || !f.AppRolled || f.PasswordsAfter != 1 {
		t.Errorf("rotation: %+v (first error %q)", f, sum.FirstError)
	}
	e.verify(t, nsStore, fmt.Sprintf("http://%s-web:8080", storeSC), "after the password rotation")
}
