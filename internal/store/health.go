package store

// STUB for branch s2-15 (issue 15): s2-14s owns this file (see the observer contract) and
// the lead replaces it with theirs at merge. Only the signatures are relied on here.

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

// HealthCommands are what a Sentinel is asked, per store, to assess Health:
//
//	SENTINEL MASTER <name>     (flags, last-ok-ping-reply, ip/port, ...)
//	SENTINEL REPLICAS <name>   (role-reported, flags, ...)
//
// assessHealth turns one store's replies (one entry per Sentinel that answered) into Health.
func assessHealth(primaryHost string, masters []map[string]string, replicas [][]map[string]string) Health {
	var h Health
	for _, m := range masters {
		if primaryHost != "" && m["ip"] == primaryHost {
			h.Agreeing++
		}
	}
	return h
}

// HealthEvents are the Sentinel pub/sub channels after which a store's Health must be
// assessed again at once (for example +sdown, -sdown, +odown, -odown, +switch-master,
// +role-change, +convert-to-slave, +failover-end). Exported so the observer subscribes to them.
var HealthEvents = []string{"+sdown", "-sdown", "+odown", "-odown", "+switch-master", "+role-change", "+convert-to-slave", "+failover-end"}
