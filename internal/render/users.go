package render

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	sessionv1 "github.com/sessionops/session-operator/api/v1alpha1"
)

// The store's Redis ACL users. Each app has its own (AppUser); replication, the
// Sentinels and the operator (with the store pods' own scripts) have one each, and the
// default user is off, so nothing connects without a name.
const (
	UserDefault     = "default"
	UserOperator    = "operator"
	UserReplication = "replication"
	UserSentinel    = "sentinel"
	// AppUserPrefix starts every app user's name.
	AppUserPrefix = "app-"
)

// Keys of the users Secret, which the store pods mount at UsersDir.
const (
	UsersDir = "/etc/session-store-users"
	// ServerUsersKey holds the servers' ACL lines, SentinelUsersKey the Sentinels'.
	ServerUsersKey   = "users.acl"
	SentinelUsersKey = "sentinel-users.acl"
)

// AppUser is the Redis user of an app.
func AppUser(app string) string { return AppUserPrefix + app }

// PasswordHash is how Redis stores a password (ACL SETUSER ... #<hash>): hex SHA-256.
// The users Secret and the live ACL carry only these, never an app's password.
func PasswordHash(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(sum[:])
}

// PasswordVersion is a short, non-reversible tag of a password hash, put on app pod
// templates so that the operator knows which password every running pod was started with.
func PasswordVersion(hash string) string {
	if len(hash) < 16 {
		return hash
	}
	return hash[:16]
}

// InternalPasswords are the generated passwords of the users no app sees.
type InternalPasswords struct {
	Operator    string
	Replication string
	Sentinel    string
}

// Complete reports whether every internal password is set.
func (p InternalPasswords) Complete() bool {
	return p.Operator != "" && p.Replication != "" && p.Sentinel != ""
}

// ACLUser is one Redis ACL user: its name, the hashes of the passwords it accepts and
// its rules (keys, channels, commands).
type ACLUser struct {
	Name   string
	On     bool
	Hashes []string
	Rules  []string
}

// SetUserArgs are the arguments of ACL SETUSER that make a live user exactly this one,
// whatever it was before (reset first; ACL SETUSER applies them atomically).
func (u ACLUser) SetUserArgs() []string {
	args := []string{u.Name, "reset"}
	if u.On {
		args = append(args, "on")
	} else {
		args = append(args, "off")
	}
	for _, h := range u.Hashes {
		args = append(args, "#"+h)
	}
	return append(args, u.Rules...)
}

// Line is the user's configuration directive, as the boot scripts write it.
func (u ACLUser) Line() string {
	parts := []string{"user", u.Name}
	if u.On {
		parts = append(parts, "on")
	} else {
		parts = append(parts, "off", "resetpass")
	}
	for _, h := range u.Hashes {
		parts = append(parts, "#"+h)
	}
	return strings.Join(append(parts, u.Rules...), " ")
}

// Users are the ACL users of a store's servers and Sentinels.
type Users struct {
	Servers   []ACLUser
	Sentinels []ACLUser
	// Revision changes whenever any user, rule or accepted hash does.
	Revision string
}

// AppCommands are what an app user may run on the servers: data commands on its keys
// (strings, hashes, lists, sets, sorted sets, expiry), Lua scripts, WAIT, transactions,
// Pub/Sub (Spring Session's keyspace events) and connection commands, INFO and ROLE
// (clients' ready and role checks); never an administrative or dangerous command
// (FLUSHALL, FLUSHDB, KEYS, CONFIG, SHUTDOWN, REPLICAOF, ACL, DEBUG, MONITOR, CLIENT KILL,
// SAVE, MIGRATE, RESTORE, SWAPDB, SORT), functions, SCRIPT FLUSH or SCRIPT KILL.
var AppCommands = []string{
	"-@all", "+@read", "+@write", "+@keyspace", "+@string", "+@hash", "+@list", "+@set", "+@sortedset",
	"+@scripting", "+@pubsub", "+@transaction", "+@connection",
	"-@admin", "-@dangerous", "-function", "-script|flush", "-script|kill",
	"+info", "+role",
}

// appPrefixCommands are taken away from an app confined to a prefix: SCAN and RANDOMKEY
// would show it other apps' key names.
var appPrefixCommands = []string{"-scan", "-randomkey"}

// keyEventChannels are the keyspace-event channels Spring Session listens on; a confined
// app may subscribe to them (they carry key names, not values).
var keyEventChannels = []string{"&__keyevent@*__:expired", "&__keyevent@*__:del"}

// AppSentinelCommands are what an app user may ask a Sentinel: where the primary, the
// replicas and the other Sentinels are, and the failover announcements.
var AppSentinelCommands = []string{
	"-@all", "+auth", "+hello", "+ping", "+client|setname", "+client|getname", "+client|id", "+info", "+role",
	"+sentinel|get-master-addr-by-name", "+sentinel|master", "+sentinel|replicas", "+sentinel|slaves",
	"+sentinel|sentinels", "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe",
}

// sentinelOnServerCommands are what Sentinel runs on the servers it monitors (Redis'
// documentation of Sentinel with ACLs).
var sentinelOnServerCommands = []string{
	"-@all", "+multi", "+exec", "+slaveof", "+replicaof", "+ping", "+subscribe", "+publish", "+info", "+role",
	"+config|rewrite", "+client|setname", "+client|kill", "+script|kill",
}

// appRules are an app user's key, channel and command rules on the servers.
// With a sharded store the app also reads the cluster's slot map (ClusterCommands).
func appRules(app *sessionv1.AppSpec, sharded bool) []string {
	var rules []string
	if app.KeyPrefix == "" {
		rules = append([]string{"~*", "&*"}, AppCommands...)
	} else {
		rules = append([]string{"~" + app.KeyPrefix + "*", "&" + app.KeyPrefix + "*"}, keyEventChannels...)
		rules = append(rules, AppCommands...)
		rules = append(rules, appPrefixCommands...)
	}
	if sharded {
		rules = append(rules, ClusterCommands...)
	}
	return rules
}

// storeUsers are the ACL users of this store: internal users with their one password,
// each app user with the hashes in Inputs.Accepted (both during a rotation) or else its
// current password's.
func (b *builder) storeUsers() Users {
	in := b.in.Internal
	off := ACLUser{Name: UserDefault, Rules: []string{"-@all"}}
	// On the servers the default user is off (no client can log in as it) but keeps every
	// permission: Redis 7.0 loads the append-only file as a client of the default user and
	// checks a MULTI/EXEC's commands against that user's rules at EXEC, so a default user
	// with -@all makes a restarted server drop every transaction in its AOF (seen in the
	// day-2 restart-all case: every acknowledged write gone).
	aofLoader := ACLUser{Name: UserDefault, Rules: []string{"~*", "&*", "+@all"}}
	one := func(pw string) []string { return []string{PasswordHash(pw)} }
	u := Users{
		Servers: []ACLUser{
			aofLoader,
			{Name: UserOperator, On: true, Hashes: one(in.Operator), Rules: []string{"~*", "&*", "+@all"}},
			{Name: UserReplication, On: true, Hashes: one(in.Replication), Rules: []string{"-@all", "+psync", "+replconf", "+ping"}},
			{Name: UserSentinel, On: true, Hashes: one(in.Sentinel), Rules: append([]string{"&*"}, sentinelOnServerCommands...)},
		},
		Sentinels: []ACLUser{
			off,
			{Name: UserOperator, On: true, Hashes: one(in.Operator), Rules: []string{"~*", "&*", "+@all"}},
			{Name: UserSentinel, On: true, Hashes: one(in.Sentinel), Rules: []string{"&*", "+@all"}},
		},
	}
	for i := range b.spec.Apps {
		app := &b.spec.Apps[i]
		name := AppUser(app.Name)
		hashes := b.acceptedHashes(app.Name)
		u.Servers = append(u.Servers, ACLUser{Name: name, On: true, Hashes: hashes, Rules: appRules(app, b.spec.Sharded())})
		u.Sentinels = append(u.Sentinels, ACLUser{Name: name, On: true, Hashes: hashes,
			Rules: append([]string{"&*"}, AppSentinelCommands...)})
	}
	u.Revision = Hash(struct{ S, T []ACLUser }{u.Servers, u.Sentinels})
	return u
}

// acceptedHashes are the password hashes an app's user accepts.
func (b *builder) acceptedHashes(app string) []string {
	if h := b.in.Accepted[AppUser(app)]; len(h) > 0 {
		return slices.Clone(h)
	}
	if pw := b.in.AppPasswords[app]; pw != "" {
		return []string{PasswordHash(pw)}
	}
	return nil
}

// aclText is the users' directives, one per line.
func aclText(users []ACLUser) string {
	var s strings.Builder
	for _, u := range users {
		s.WriteString(u.Line())
		s.WriteByte('\n')
	}
	return s.String()
}

// usersSecret is what the store pods mount: the internal users' passwords (the boot
// scripts configure replication and Sentinel with them, and redis-cli in the scripts
// authenticates as the operator) and the ACL lines of servers and Sentinels, which hold
// only password hashes. A pod that starts during a rotation reads both hashes here.
func (b *builder) usersSecret(u Users) *corev1.Secret {
	in := b.in.Internal
	return &corev1.Secret{
		TypeMeta:   typeMeta("v1", "Secret"),
		ObjectMeta: b.meta(b.names.UsersSecret(), ComponentAuth, "session-cluster"),
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			UserOperator:     []byte(in.Operator),
			UserReplication:  []byte(in.Replication),
			UserSentinel:     []byte(in.Sentinel),
			ServerUsersKey:   []byte(aclText(u.Servers)),
			SentinelUsersKey: []byte(aclText(u.Sentinels)),
		},
	}
}

// NextAccepted is the next set of password hashes each app user accepts, given each
// app's current password hash (current, by user), what the store accepts so far
// (accepted, by user) and the password versions (PasswordVersion) running app pods still
// use (inUse, by user; nil while not known). A new hash is added beside the old ones; an
// old one is dropped only once no running pod of the app uses it. The current hash
// always comes last.
func NextAccepted(current map[string]string, accepted, inUse map[string][]string) map[string][]string {
	out := map[string][]string{}
	for user, cur := range current {
		keep := []string{}
		for _, h := range accepted[user] {
			if h == cur || slices.Contains(keep, h) {
				continue
			}
			if inUse == nil || slices.Contains(inUse[user], PasswordVersion(h)) {
				keep = append(keep, h)
			}
		}
		out[user] = append(keep, cur)
	}
	return out
}
