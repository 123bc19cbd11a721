package store

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Health is what the Sentinels say about the primary's ability to take writes.
type Health struct {
	// Agreeing counts reachable Sentinels that name PrimaryHost as the primary.
	Agreeing int
	// PrimaryDown says why the Sentinels see the primary as unable to take writes
	// (flags s_down/o_down/disconnected, a ping reply too old, ...); "" when it is fine.
	// Never carries a secret.
	PrimaryDown string
	// OtherPrimaries are servers other than PrimaryHost that report role master.
	OtherPrimaries []string
}

// HealthEvents are the Sentinel pub/sub channels after which a store's Health must be
// assessed again at once: the primary going down or coming back (+sdown, -sdown, +odown,
// -odown), a failover ending (+switch-master, +failover-end), a server reporting a role
// other than the one Sentinel gave it or converted back (-role-change, +role-change,
// +convert-to-slave), and a server that restarted (+reboot).
var HealthEvents = []string{
	"+sdown", "-sdown", "+odown", "-odown", "+switch-master", "+failover-end",
	"-role-change", "+role-change", "+convert-to-slave", "+reboot",
}

// minPingStale is the shortest silence that counts as down before the Sentinels' own
// down-after: Sentinel pings every second, so a healthy server's last-ok-ping-reply stays
// near or under one second; two seconds without a reply is a primary that is not serving.
const minPingStale = 2 * time.Second

// HealthCommands are what a Sentinel is asked, per store, to assess Health:
//
//	SENTINEL MASTER <name>     (flags, last-ok-ping-reply, ip/port, ...)
//	SENTINEL REPLICAS <name>   (role-reported, flags, ...)
//
// assessHealth turns one store's replies (one entry per Sentinel that answered, replicas[i]
// from the same Sentinel as masters[i]) into Health.
//
// The primary is down when a Sentinel reports it objectively down (o_down: a quorum
// already agreed), or when most of the Sentinels naming it see it down on their own:
// s_down, no link to it (disconnected), no ping reply for max(2 s, down-after/2), or it
// reports itself a replica. Most, not any: one Sentinel cut off from a healthy primary
// must not make the whole store unready. A server other than the primary counts as
// another primary when a Sentinel that can reach it (no s_down, no disconnected link)
// last heard it report role master: a resumed old primary, before Sentinel converts it.
func assessHealth(primaryHost string, masters []map[string]string, replicas [][]map[string]string) Health {
	var h Health
	if primaryHost == "" {
		return h
	}
	type verdict struct {
		why string
		n   int
	}
	var downs []verdict
	down, oDown := 0, false
	for _, m := range masters {
		if m["ip"] != primaryHost {
			continue
		}
		h.Agreeing++
		why := masterDown(m)
		if why == "" {
			continue
		}
		oDown = oDown || hasFlag(m["flags"], "o_down") // a quorum already agreed
		down++
		found := false
		for i := range downs {
			if downs[i].why == why {
				downs[i].n++
				found = true
			}
		}
		if !found {
			downs = append(downs, verdict{why: why, n: 1})
		}
	}
	if h.Agreeing > 0 && (oDown || 2*down > h.Agreeing) {
		sort.SliceStable(downs, func(i, j int) bool { return downs[i].n > downs[j].n })
		parts := make([]string, 0, len(downs))
		for _, d := range downs {
			parts = append(parts, fmt.Sprintf("%s (%d of %d Sentinels)", d.why, d.n, h.Agreeing))
		}
		h.PrimaryDown = strings.Join(parts, "; ")
	}

	others := map[string]bool{}
	for _, rs := range replicas {
		for _, r := range rs {
			ip := r["ip"]
			if ip == "" || ip == primaryHost || r["role-reported"] != "master" {
				continue
			}
			if hasFlag(r["flags"], "s_down") || hasFlag(r["flags"], "disconnected") {
				continue
			}
			others[ip] = true
		}
	}
	for ip := range others {
		h.OtherPrimaries = append(h.OtherPrimaries, ip)
	}
	sort.Strings(h.OtherPrimaries)
	return h
}

// masterDown is why one Sentinel's SENTINEL MASTER reply shows the primary unable to take
// writes, "" when it does not.
func masterDown(m map[string]string) string {
	flags := m["flags"]
	switch {
	case hasFlag(flags, "o_down"):
		return "objectively down (o_down)"
	case hasFlag(flags, "s_down"):
		return "subjectively down (s_down)"
	case hasFlag(flags, "disconnected"):
		return "Sentinel has no link to it"
	case m["role-reported"] == "slave":
		return "it reports itself a replica"
	}
	ms, err := strconv.ParseInt(m["last-ok-ping-reply"], 10, 64)
	if err != nil {
		return ""
	}
	stale := minPingStale
	if da, err := strconv.ParseInt(m["down-after-milliseconds"], 10, 64); err == nil {
		stale = max(stale, time.Duration(da)*time.Millisecond/2)
	}
	if age := time.Duration(ms) * time.Millisecond; age > stale {
		return fmt.Sprintf("no ping reply for %.1fs", age.Seconds())
	}
	return ""
}

func hasFlag(flags, f string) bool {
	for _, x := range strings.Split(flags, ",") {
		if x == f {
			return true
		}
	}
	return false
}
