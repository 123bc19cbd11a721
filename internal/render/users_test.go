package render

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

func userLine(t *testing.T, acl, name string) string {
	t.Helper()
	for _, l := range strings.Split(acl, "\n") {
		if strings.HasPrefix(l, "user "+name+" ") {
			return l
		}
	}
	t.Fatalf("no user %s in:\n%s", name, acl)
	return ""
}

func TestACLUsers(t *testing.T) {
	sc := cluster(sessionv1.ModeStore, func(s *sessionv1.SessionClusterSpec) {
		s.Apps = append(s.Apps, sessionv1.AppSpec{Name: "api", Image: "x", KeyPrefix: "api:"})
	})
	in := inputsFor(sc, testPassword)
	in.AppPasswords["api"] = "anotherAppPassw0rd"
	d, err := Render(sc, Options{}, in)
	if err != nil {
		t.Fatal(err)
	}
	users := find[*corev1.Secret](t, d, "shop-store-users")
	servers, sentinels := string(users.Data[ServerUsersKey]), string(users.Data[SentinelUsersKey])
	if strings.Contains(servers+sentinels, testPassword) || strings.Contains(servers+sentinels, testInternal.Operator) {
		t.Fatal("ACL lines hold a password instead of its hash")
	}
	for _, want := range []struct{ acl, user, line string }{
		// off: nobody logs in as it; every permission: Redis 7.0 replays the AOF's
		// transactions as this user (see storeUsers).
		{servers, "default", "user default off resetpass ~* &* +@all"},
		{servers, "operator", "user operator on #" + PasswordHash(testInternal.Operator) + " ~* &* +@all"},
		{servers, "replication", "user replication on #" + PasswordHash(testInternal.Replication) + " -@all +psync +replconf +ping"},
		{servers, "app-web", "user app-web on #" + PasswordHash(testPassword) + " ~* &* " + strings.Join(AppCommands, " ")},
		{servers, "app-api", "user app-api on #" + PasswordHash("anotherAppPassw0rd") + " ~api:* &api:* &__keyevent@*__:expired &__keyevent@*__:del " +
			strings.Join(AppCommands, " ") + " -scan -randomkey"},
		{sentinels, "default", "user default off resetpass -@all"},
		{sentinels, "sentinel", "user sentinel on #" + PasswordHash(testInternal.Sentinel) + " &* +@all"},
		{sentinels, "app-web", "user app-web on #" + PasswordHash(testPassword) + " &* " + strings.Join(AppSentinelCommands, " ")},
	} {
		if got := userLine(t, want.acl, want.user); got != want.line {
			t.Errorf("%s:\n got %s\nwant %s", want.user, got, want.line)
		}
	}
	for _, forbidden := range []string{"+@all", "+flushall", "+config", "+acl", "+shutdown", "+replicaof"} {
		if slices.Contains(AppCommands, forbidden) || slices.Contains(AppSentinelCommands, forbidden) {
			t.Errorf("app users may run %s", forbidden)
		}
	}
	if string(users.Data[UserOperator]) != testInternal.Operator || string(users.Data[UserReplication]) != testInternal.Replication {
		t.Error("users secret lacks the internal passwords the boot scripts read")
	}
	// Live application: the same user, from reset.
	args := d.Users.Servers[1].SetUserArgs()
	if args[0] != "operator" || args[1] != "reset" || args[2] != "on" || args[3] != "#"+PasswordHash(testInternal.Operator) {
		t.Errorf("SETUSER args %v", args)
	}
	cm := find[*corev1.ConfigMap](t, d, "shop-store-config")
	if !strings.Contains(cm.Data["redis.conf"], "notify-keyspace-events Egx") {
		t.Error("redis.conf does not turn on the keyspace events Spring Session needs")
	}
	for _, f := range []string{"redis-boot.sh", "sentinel-boot.sh"} {
		if strings.Contains(cm.Data[f], "requirepass") {
			t.Errorf("%s still configures requirepass", f)
		}
	}
	api := find[*appsv1.Deployment](t, d, "shop-api")
	ref := envOf(api.Spec.Template.Spec.Containers[0])["SESSION_REDIS_PASSWORD"].ValueFrom.SecretKeyRef
	if ref.Key != "api.password" {
		t.Errorf("app api reads password key %s", ref.Key)
	}
}

func TestRotationKeepsBothPasswordsAndStore(t *testing.T) {
	sc := cluster(sessionv1.ModeStore)
	oldH, newH := PasswordHash(testPassword), PasswordHash("theNextPassw0rd")
	in := inputsFor(sc, "theNextPassw0rd")
	in.Accepted = map[string][]string{"app-web": {oldH, newH}}
	in.PodPasswordVersions = map[string]string{"web": PasswordVersion(oldH)}
	during, err := Render(sc, Options{}, in)
	if err != nil {
		t.Fatal(err)
	}
	before := mustRender(t, sc)
	line := userLine(t, string(find[*corev1.Secret](t, during, "shop-store-users").Data[ServerUsersKey]), "app-web")
	if !strings.Contains(line, "#"+oldH+" #"+newH+" ") {
		t.Errorf("during a rotation the app user must accept both passwords: %s", line)
	}
	for _, sts := range []string{"shop-store", "shop-sentinel"} {
		a := find[*appsv1.StatefulSet](t, before, sts).Spec.Template.Annotations[AnnotationConfigHash]
		b := find[*appsv1.StatefulSet](t, during, sts).Spec.Template.Annotations[AnnotationConfigHash]
		if a != b {
			t.Errorf("a password rotation rolls %s", sts)
		}
	}
	// The app keeps its pods until the operator moves the version.
	dep := func(d *Desired) map[string]string {
		return find[*appsv1.Deployment](t, d, "shop-web").Spec.Template.Annotations
	}
	if dep(before)[AnnotationPasswordVersion] != dep(during)[AnnotationPasswordVersion] || dep(before)[AnnotationWiringHash] != dep(during)[AnnotationWiringHash] {
		t.Error("the app rolls before every server accepts its new password")
	}
	in.PodPasswordVersions = nil
	after, err := Render(sc, Options{}, in)
	if err != nil {
		t.Fatal(err)
	}
	if dep(after)[AnnotationPasswordVersion] != PasswordVersion(newH) {
		t.Errorf("password version %s, want %s", dep(after)[AnnotationPasswordVersion], PasswordVersion(newH))
	}
}

func TestNextAccepted(t *testing.T) {
	cur := map[string]string{"app-web": "new"}
	v := PasswordVersion
	for _, c := range []struct {
		name     string
		accepted map[string][]string
		inUse    map[string][]string
		want     []string
	}{
		{"first", nil, nil, []string{"new"}},
		{"unchanged", map[string][]string{"app-web": {"new"}}, nil, []string{"new"}},
		{"adds beside the old", map[string][]string{"app-web": {"old"}}, nil, []string{"old", "new"}},
		{"keeps the old while unknown", map[string][]string{"app-web": {"old", "new"}}, nil, []string{"old", "new"}},
		{"keeps the old while a pod uses it", map[string][]string{"app-web": {"old", "new"}}, map[string][]string{"app-web": {v("old"), v("new")}}, []string{"old", "new"}},
		{"drops the old when no pod uses it", map[string][]string{"app-web": {"old", "new"}}, map[string][]string{"app-web": {v("new")}}, []string{"new"}},
		{"a second rotation mid-way", map[string][]string{"app-web": {"older", "old"}}, map[string][]string{"app-web": {v("old")}}, []string{"old", "new"}},
	} {
		got := NextAccepted(cur, c.accepted, c.inUse)["app-web"]
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
