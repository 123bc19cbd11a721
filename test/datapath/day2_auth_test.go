//go:build datapath

package datapath

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
	"github.com/sessionops/session-operator/internal/render"
	"github.com/sessionops/session-operator/internal/store"
)

// Password rotation on the data path. Each case runs the steps the operator's syncUsers
// runs (controllers/users.go), with the same render and the same live ACL code, on the
// real servers and Sentinels, while 8 clients write sessions with WAIT 1 through the
// reference app:
//  1. the new password is added beside the old one: into the users Secret (projected into
//     the pods' users directory as the kubelet would), then live on every server and
//     Sentinel (store.SyncUsers);
//  2. the app instances are replaced one by one (surge first, as the Deployment rolls)
//     by instances started from the new wiring;
//  3. once no instance runs with the old password, it is dropped, in the Secret and live.
//
// Mid-rotation a replica and a Sentinel are restarted (the kubelet restarting their
// containers, same volumes): they must come back accepting both passwords. Those two are
// the harness's doing; store_restarts counts restarts the rotation itself caused.

const (
	rotSessions     = 160
	rotClients      = 8
	rotApps         = 3
	userSecretName  = "shop-app-password"
	rotWebKeyPrefix = "session:"
)

// urlSet is the app instances the writers use, changed while they write (a rolling
// update changes the Service's endpoints the same way).
type urlSet struct {
	mu   sync.Mutex
	urls []string
}

func (u *urlSet) get(n int) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.urls[n%len(u.urls)]
}

func (u *urlSet) without(url string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, x := range u.urls {
		if x != url {
			out = append(out, x)
		}
	}
	return out
}

func (u *urlSet) set(urls []string) {
	u.mu.Lock()
	u.urls = append([]string(nil), urls...)
	u.mu.Unlock()
}

// rotWriters bump sessions like startWriters, over a changing set of instances.
func rotWriters(l *ledger, ids []string, urls *urlSet, clients int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	cl := newClient(clients, 5*time.Second)
	for k := 0; k < clients; k++ {
		var mine []string
		for i := k; i < len(ids); i += clients {
			mine = append(mine, ids[i])
		}
		wg.Add(1)
		go func(k int, mine []string) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				l.record(do(cl, context.Background(), "bump", urls.get(n+k), mine[n%len(mine)], k))
				time.Sleep(writerPause)
			}
		}(k, mine)
	}
	return func() { close(done); wg.Wait() }
}

// roleSampler asks every server for its role at least twice a second: the most servers
// reporting master at once, the primary changes, and the time with no master.
type roleSampler struct {
	c       *cluster
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	max     int
	changes int
	last    string
	noneFor time.Duration
}

func startRoleSampler(c *cluster) *roleSampler {
	s := &roleSampler{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		prev := time.Now()
		for {
			masters := s.sample()
			now := time.Now()
			s.mu.Lock()
			s.max = max(s.max, len(masters))
			if len(masters) == 0 {
				s.noneFor += now.Sub(prev)
			}
			if len(masters) == 1 {
				if s.last != "" && masters[0] != s.last {
					s.changes++
				}
				s.last = masters[0]
			}
			s.mu.Unlock()
			prev = now
			select {
			case <-s.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *roleSampler) sample() []string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var masters []string
	for _, p := range s.c.redis {
		wg.Add(1)
		go func(p *pod) {
			defer wg.Done()
			if p.proc == nil || !p.proc.running() {
				return
			}
			i, err := s.c.info(p, "replication")
			if err == nil && i["role"] == "master" {
				mu.Lock()
				masters = append(masters, p.name)
				mu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	return masters
}

func (s *roleSampler) halt() (maxMasters, changes int, withoutPrimary float64) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.changes, s.noneFor.Seconds()
}

func randomPassword(t testing.TB) string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	out := make([]byte, 32)
	for i := range out {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		must(t, err)
		out[i] = alphabet[n.Int64()]
	}
	return string(out)
}

// syncUsersLive is the operator's live step: every server and Sentinel of the cluster
// gets the rendered users.
func (c *cluster) syncUsersLive() error {
	u := c.desired.Users
	t := store.UsersTarget{
		Username: render.UserOperator, Password: c.inputs.Internal.Operator,
		Managed: func(n string) bool { return strings.HasPrefix(n, render.AppUserPrefix) },
	}
	for _, p := range c.redis {
		t.Servers = append(t.Servers, fmt.Sprintf("%s:%d", p.host, render.RedisPort))
	}
	for _, p := range c.sentinels {
		t.Sentinels = append(t.Sentinels, fmt.Sprintf("%s:%d", p.host, render.SentinelPort))
	}
	for _, x := range u.Servers {
		t.ServerUsers = append(t.ServerUsers, x.SetUserArgs())
	}
	for _, x := range u.Sentinels {
		t.SentinelUsers = append(t.SentinelUsers, x.SetUserArgs())
	}
	res, err := store.SyncUsers(context.Background(), t)
	if err != nil {
		return err
	}
	if !res.Complete(t) || len(res.Absent) > 0 {
		return fmt.Errorf("users synced on %v only (absent %v)", res.Synced, res.Absent)
	}
	return nil
}

// authAs reports whether user/pw authenticates on a server or Sentinel.
func authAs(addr, user, pw string) error {
	r := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, Protocol: 2,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return r.Ping(ctx).Err()
}

// everywhereAccepts checks that user authenticates with pw on every server and Sentinel
// (want true) or on none (want false).
func (c *cluster) everywhereAccepts(user, pw string, want bool) error {
	for _, p := range append(append([]*pod{}, c.redis...), c.sentinels...) {
		port := render.RedisPort
		if p.kind == "sentinel" {
			port = render.SentinelPort
		}
		err := authAs(fmt.Sprintf("%s:%d", p.addr, port), user, pw)
		if want && err != nil {
			return fmt.Errorf("%s refuses %s: %v", p.name, user, err)
		}
		if !want && err == nil {
			return fmt.Errorf("%s still accepts %s's old password", p.name, user)
		}
	}
	return nil
}

func (c *cluster) totalStarts() int {
	n := 0
	for _, p := range append(append([]*pod{}, c.redis...), c.sentinels...) {
		n += p.starts
	}
	return n
}

func TestDay2RotateUserSecret(t *testing.T) {
	runRotation(t, "rotate-user-secret", true)
}

func TestDay2RotateGenerated(t *testing.T) {
	runRotation(t, "rotate-generated", false)
}

// runRotation runs one rotation case: userSecret (store.auth.existingSecret changed by
// its owner) or generated (the generated auth Secret deleted, or the rotate-password
// annotation set: the operator makes a new password).
func runRotation(t *testing.T, name string, userSecret bool) {
	oldPW := harnessPassword
	c := newCluster(t, func(sc *sessionv1.SessionCluster) {
		sc.Spec.Apps[0].KeyPrefix = rotWebKeyPrefix
		if userSecret {
			sc.Spec.Store.Auth.ExistingSecret = userSecretName
		}
	})
	if userSecret {
		// The user's own Secret, as they created it.
		c.secrets[userSecretName] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: userSecretName},
			Data: map[string][]byte{sessionv1.DefaultSecretKey: []byte(oldPW)}}
	}
	user := render.AppUser(appName)
	first := c.startSettledStore()
	c.addApps(rotApps)
	for _, p := range c.apps {
		c.startApp(p)
	}
	l := newLedger()
	ctx := context.Background()
	if err := createSessions(ctx, l, c.appURLs(), rotSessions, rotClients); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	startsBefore := c.totalStarts()
	sampler := startRoleSampler(c)
	urls := &urlSet{}
	urls.set(c.appURLs())
	stopWriters := rotWriters(l, l.ids(), urls, rotClients)
	time.Sleep(2 * time.Second) // writes before the rotation

	// The new password appears.
	newPW := randomPassword(t)
	in := c.inputs
	in.AppPasswords = map[string]string{appName: newPW}
	if userSecret {
		c.secrets[userSecretName].Data[sessionv1.DefaultSecretKey] = []byte(newPW)
	}
	prev := map[string][]string{user: {render.PasswordHash(oldPW)}}
	current := map[string]string{user: render.PasswordHash(newPW)}

	// 1. Added beside the old one: the Secret first, then live.
	t0 := time.Now()
	in.Accepted = render.NextAccepted(current, prev, nil)
	in.PodPasswordVersions = map[string]string{appName: render.PasswordVersion(render.PasswordHash(oldPW))}
	c.rerender(in)
	must(t, c.syncUsersLive())
	must(t, c.everywhereAccepts(user, oldPW, true))
	must(t, c.everywhereAccepts(user, newPW, true))
	t.Logf("new password accepted everywhere in %.2fs", time.Since(t0).Seconds())

	// A replica and a Sentinel restart mid-rotation: they boot from the users directory.
	deliberate := 0
	for _, p := range c.redis {
		if p.host != first {
			p.proc.kill(9)
			c.start(p)
			deliberate++
			if err := c.waitReady(60*time.Second, p); err != nil {
				c.dumpLogs()
				t.Fatal(err)
			}
			break
		}
	}
	s := c.sentinels[len(c.sentinels)-1]
	s.proc.kill(9)
	c.start(s)
	deliberate++
	if err := c.waitReady(60*time.Second, s); err != nil {
		c.dumpLogs()
		t.Fatal(err)
	}
	must(t, c.everywhereAccepts(user, oldPW, true))
	must(t, c.everywhereAccepts(user, newPW, true))

	// 2. The apps roll onto the new password, one surge instance at a time.
	in.PodPasswordVersions = nil
	c.rerender(in)
	old := append([]*pod(nil), c.apps...)
	for _, o := range old {
		c.addApps(1)
		n := c.apps[len(c.apps)-1]
		c.startApp(n)
		urls.set(append(urls.without(o.url()), n.url()))
		time.Sleep(300 * time.Millisecond) // the endpoint leaves the Service before the pod stops
		o.proc.stop(10 * time.Second)
	}
	for _, p := range c.apps {
		if p.proc.running() && !strings.Contains(strings.Join(p.env, "\n"), "SESSION_REDIS_PASSWORD="+newPW) {
			t.Fatalf("%s still runs with the old password", p.name)
		}
	}

	// 3. No running instance uses the old password: drop it.
	in.Accepted = render.NextAccepted(current, in.Accepted, map[string][]string{user: {render.PasswordVersion(current[user])}})
	c.rerender(in)
	must(t, c.syncUsersLive())
	must(t, c.everywhereAccepts(user, oldPW, false))
	must(t, c.everywhereAccepts(user, newPW, true))
	t.Logf("rotation finished in %.2fs", time.Since(t0).Seconds())

	time.Sleep(2 * time.Second) // writes after the rotation
	stopWriters()
	maxMasters, changes, without := sampler.halt()
	restarts := c.totalStarts() - startsBefore - deliberate

	unverified, err := readBack(ctx, l, l.ids(), c.appURLs(), 12)
	if err != nil || unverified > 0 {
		t.Errorf("read back: %d sessions unverified: %v", unverified, err)
	}
	acked, lost := l.counts()
	failed := 0
	for _, e := range l.events {
		if (e.Op == "bump" || e.Op == "login") && !e.OK {
			failed++
		}
	}
	_ = l.writeEvents(resultsDir(t) + "/day2-" + name + "-events.jsonl")
	recordDay2Case(t, Day2Case{
		Name: name, AcknowledgedWrites: int64(acked), FailedWrites: int64(failed), AcknowledgedLost: int64(lost),
		PrimaryChanges: changes, StoreRestarts: restarts, MastersSeenMax: maxMasters, SecondsWithoutPrimary: without,
	})
	if failed > 0 || lost > 0 || restarts > 0 || changes > 0 || maxMasters != 1 {
		c.dumpLogs()
		t.Errorf("%s: failed_writes=%d acknowledged_lost=%d store_restarts=%d primary_changes=%d masters_seen_max=%d; want 0 0 0 0 1",
			name, failed, lost, restarts, changes, maxMasters)
	}
}
