package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Session modes, as in SessionCluster.spec.mode.
const (
	ModeStore     = "Store"
	ModeSticky    = "Sticky"
	ModeClustered = "Clustered"
)

// Backends the app can run on. The backend follows from which env is present,
// not only from SESSION_MODE (see chooseBackend).
const (
	BackendRedis   = "redis"
	BackendCluster = "memberlist"
	BackendMemory  = "memory"
)

const (
	defaultTTL         = 30 * time.Minute
	defaultPort        = 8080
	defaultCookieName  = "sid"
	defaultWaitTimeout = time.Second
	maxPadBytes        = 1 << 20
)

// Config is everything the app reads from its environment: the session
// operator's wiring contract plus a few app-local knobs (documented in README.md).
type Config struct {
	Mode       string
	TTL        time.Duration
	Port       int
	CookieName string
	Instance   string // POD_NAME, else the hostname

	// Store (Redis + Sentinel).
	SentinelAddrs  []string
	SentinelMaster string
	RedisAddr      string
	RedisUsername  string // the app's ACL user, for Redis and the Sentinels alike
	RedisPassword  string
	// RedisMode is "cluster" for a sharded store (Redis Cluster), else "" (Sentinel).
	RedisMode    string
	ClusterNodes []string // SESSION_REDIS_CLUSTER_NODES: every server, host:port
	WaitReplicas int
	WaitTimeout  time.Duration
	PadBytes     int

	// Clustered (memberlist).
	PeersDNS  string
	PeersPort int
	PodName   string
	PodIP     string

	Backend string
}

// LoadConfig reads the configuration through lookup (os.LookupEnv in main,
// a map in tests). It fails on values that are present but malformed: a
// mis-wired pod should crash loudly, not run with a silent default.
func LoadConfig(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	c := Config{
		TTL:            defaultTTL,
		Port:           defaultPort,
		CookieName:     defaultCookieName,
		WaitTimeout:    defaultWaitTimeout,
		SentinelMaster: get("SESSION_REDIS_SENTINEL_MASTER"),
		RedisAddr:      get("SESSION_REDIS_ADDR"),
		PeersDNS:       get("SESSION_PEERS_DNS"),
		PodName:        get("POD_NAME"),
		PodIP:          get("POD_IP"),
	}
	// The password is taken verbatim: a password may legitimately contain spaces.
	c.RedisPassword, _ = lookup("SESSION_REDIS_PASSWORD")
	c.RedisUsername = get("SESSION_REDIS_USERNAME")

	switch m := get("SESSION_MODE"); strings.ToLower(m) {
	case "":
	case "store":
		c.Mode = ModeStore
	case "sticky":
		c.Mode = ModeSticky
	case "clustered":
		c.Mode = ModeClustered
	default:
		return c, fmt.Errorf("SESSION_MODE=%q: want Store, Sticky or Clustered", m)
	}

	if v := get("SESSION_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SESSION_TTL=%q: want a positive Go duration such as 30m0s", v)
		}
		c.TTL = d
	} else if v := get("SESSION_TTL_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("SESSION_TTL_SECONDS=%q: want a positive integer", v)
		}
		c.TTL = time.Duration(n) * time.Second
	}

	var err error
	if c.Port, err = intEnv(get, "PORT", defaultPort, 1, 65535); err != nil {
		return c, err
	}
	if v := get("SESSION_COOKIE_NAME"); v != "" {
		c.CookieName = v
	}
	if c.WaitReplicas, err = intEnv(get, "SESSION_REDIS_WAIT_REPLICAS", 0, 0, 1000); err != nil {
		return c, err
	}
	if c.PadBytes, err = intEnv(get, "SESSION_PAD_BYTES", 0, 0, maxPadBytes); err != nil {
		return c, err
	}
	if v := get("SESSION_REDIS_WAIT_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SESSION_REDIS_WAIT_TIMEOUT=%q: want a positive Go duration such as 1s", v)
		}
		c.WaitTimeout = d
	}
	if c.PeersPort, err = intEnv(get, "SESSION_PEERS_PORT", 0, 0, 65535); err != nil {
		return c, err
	}

	switch m := strings.ToLower(get("SESSION_REDIS_MODE")); m {
	case "", "sentinel":
	case "cluster":
		c.RedisMode = "cluster"
	default:
		return c, fmt.Errorf("SESSION_REDIS_MODE=%q: want cluster or sentinel", m)
	}
	for _, a := range strings.Split(get("SESSION_REDIS_CLUSTER_NODES"), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("SESSION_REDIS_CLUSTER_NODES: %q is not host:port", a)
		}
		c.ClusterNodes = append(c.ClusterNodes, a)
	}
	if c.RedisMode == "cluster" && len(c.ClusterNodes) == 0 {
		return c, fmt.Errorf("SESSION_REDIS_MODE=cluster needs SESSION_REDIS_CLUSTER_NODES")
	}
	if c.RedisMode != "cluster" && len(c.ClusterNodes) > 0 {
		return c, fmt.Errorf("SESSION_REDIS_CLUSTER_NODES is set but SESSION_REDIS_MODE is not cluster")
	}

	for _, a := range strings.Split(get("SESSION_REDIS_SENTINEL_ADDRS"), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("SESSION_REDIS_SENTINEL_ADDRS: %q is not host:port", a)
		}
		c.SentinelAddrs = append(c.SentinelAddrs, a)
	}
	if c.RedisAddr != "" {
		if _, _, err := net.SplitHostPort(c.RedisAddr); err != nil {
			return c, fmt.Errorf("SESSION_REDIS_ADDR=%q is not host:port", c.RedisAddr)
		}
	}

	c.Instance = c.PodName
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}

	c.Backend = chooseBackend(c)
	switch c.Backend {
	case BackendRedis:
		if len(c.SentinelAddrs) > 0 && c.SentinelMaster == "" {
			return c, fmt.Errorf("SESSION_REDIS_SENTINEL_ADDRS is set but SESSION_REDIS_SENTINEL_MASTER is empty")
		}
	case BackendCluster:
		if c.PeersPort == 0 {
			return c, fmt.Errorf("SESSION_MODE=Clustered needs SESSION_PEERS_PORT")
		}
	}
	if c.Mode == "" {
		c.Mode = map[string]string{BackendRedis: ModeStore, BackendCluster: ModeClustered, BackendMemory: ModeSticky}[c.Backend]
	}
	return c, nil
}

// chooseBackend applies the contract's rule: any Redis wiring wins (Store mode,
// or Sticky with a store), then Clustered replication, else plain memory.
func chooseBackend(c Config) string {
	switch {
	case len(c.SentinelAddrs) > 0 || c.RedisAddr != "" || len(c.ClusterNodes) > 0:
		return BackendRedis
	case c.Mode == ModeClustered:
		return BackendCluster
	default:
		return BackendMemory
	}
}

func intEnv(get func(string) string, key string, def, lo, hi int) (int, error) {
	v := get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want an integer in [%d, %d]", key, v, lo, hi)
	}
	return n, nil
}
