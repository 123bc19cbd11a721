package store

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// sentinelReplies are SENTINEL MASTER / SENTINEL REPLICAS replies of three real
// redis-sentinel 7.0 processes, captured by testdata/capture in each state of a store.
func sentinelReplies(t *testing.T) map[string]struct {
	Primary  string                `json:"primary"`
	Masters  []map[string]string   `json:"masters"`
	Replicas [][]map[string]string `json:"replicas"`
} {
	t.Helper()
	raw, err := os.ReadFile("testdata/sentinel-replies.json")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]struct {
		Primary  string                `json:"primary"`
		Masters  []map[string]string   `json:"masters"`
		Replicas [][]map[string]string `json:"replicas"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAssessHealthOnCapturedReplies(t *testing.T) {
	replies := sentinelReplies(t)
	for _, tc := range []struct {
		state     string
		agreeing  int
		downWith  string // substring of PrimaryDown; "" means not down
		others    []string
		otherHost string // primary to ask about instead of the captured one
	}{
		{state: "healthy", agreeing: 3},
		{state: "frozen_before_down_after", agreeing: 3, downWith: "no ping reply for 2."},
		{state: "frozen_sdown", agreeing: 3, downWith: "(o_down)"},
		{state: "failed_over_old_frozen", agreeing: 3},
		{state: "resumed_two_masters", agreeing: 3, others: []string{"127.0.1.1"}},
		{state: "converted", agreeing: 3},
		{state: "all_servers_gone", agreeing: 3, downWith: "(s_down) (3 of 3 Sentinels)"},
		// Asked about a server the Sentinels do not name: none agrees, nothing is down.
		{state: "healthy", otherHost: "127.0.1.2", agreeing: 0, others: nil},
	} {
		r, ok := replies[tc.state]
		if !ok {
			t.Fatalf("no captured state %s", tc.state)
		}
		primary := r.Primary
		if tc.otherHost != "" {
			primary = tc.otherHost
		}
		h := assessHealth(primary, r.Masters, r.Replicas)
		if h.Agreeing != tc.agreeing {
			t.Errorf("%s: Agreeing %d, want %d", tc.state, h.Agreeing, tc.agreeing)
		}
		switch {
		case tc.downWith == "" && h.PrimaryDown != "":
			t.Errorf("%s: PrimaryDown %q, want none", tc.state, h.PrimaryDown)
		case tc.downWith != "" && !strings.Contains(h.PrimaryDown, tc.downWith):
			t.Errorf("%s: PrimaryDown %q, want it to say %q", tc.state, h.PrimaryDown, tc.downWith)
		}
		if !slices.Equal(h.OtherPrimaries, tc.others) {
			t.Errorf("%s: OtherPrimaries %v, want %v", tc.state, h.OtherPrimaries, tc.others)
		}
	}
}

// One Sentinel cut off from a primary the others reach does not make it down; a quorum's
// o_down does, even from one Sentinel.
func TestAssessHealthMajority(t *testing.T) {
	r := sentinelReplies(t)["healthy"]
	cut := func(i int, flags string) []map[string]string {
		ms := make([]map[string]string, len(r.Masters))
		for j, m := range r.Masters {
			ms[j] = map[string]string{}
			for k, v := range m {
				ms[j][k] = v
			}
		}
		ms[i]["flags"] = flags
		return ms
	}
	if h := assessHealth(r.Primary, cut(0, "s_down,master,disconnected"), r.Replicas); h.PrimaryDown != "" {
		t.Errorf("one Sentinel of three sees s_down: PrimaryDown %q", h.PrimaryDown)
	}
	if h := assessHealth(r.Primary, cut(0, "s_down,o_down,master"), r.Replicas); !strings.Contains(h.PrimaryDown, "o_down") {
		t.Errorf("one Sentinel reports o_down: PrimaryDown %q", h.PrimaryDown)
	}
	if h := assessHealth("", r.Masters, r.Replicas); h.Agreeing != 0 || h.PrimaryDown != "" || h.OtherPrimaries != nil {
		t.Errorf("no primary: %+v", h)
	}
}

// Every HealthEvents announcement about the store's primary or one of its servers is
// dispatched to that store (a re-assessment follows, which wakes the reconcile when the
// Observation changed); one about another store's is not; and the observer subscribes to
// every HealthEvents channel.
func TestHealthEventsReachTheStore(t *testing.T) {
	for _, tc := range []struct {
		channel, payload, master string
	}{
		{"+sdown", "master shop shop-store-0.h 6379", "shop"},
		{"-sdown", "master shop shop-store-0.h 6379", "shop"},
		{"+odown", "master shop shop-store-0.h 6379 #quorum 2/2", "shop"},
		{"-odown", "master shop shop-store-0.h 6379", "shop"},
		{"+failover-end", "master shop shop-store-0.h 6379", "shop"},
		{"+switch-master", "shop shop-store-0.h 6379 shop-store-1.h 6379", "shop"},
		{"-role-change", "slave shop-store-0.h:6379 shop-store-0.h 6379 @ shop shop-store-1.h 6379 new reported role is master", "shop"},
		{"+role-change", "slave shop-store-0.h:6379 shop-store-0.h 6379 @ shop shop-store-1.h 6379 new reported role is slave", "shop"},
		{"+convert-to-slave", "slave shop-store-0.h:6379 shop-store-0.h 6379 @ shop shop-store-1.h 6379", "shop"},
		{"+reboot", "slave shop-store-2.h:6379 shop-store-2.h 6379 @ shop shop-store-1.h 6379", "shop"},
		{"+sdown", "slave shop-store-2.h:6379 shop-store-2.h 6379 @ shop shop-store-1.h 6379", "shop"},
		{"+sdown", "master other other-store-0.h 6379", "other"},
		{"-role-change", "slave other-store-0.h:6379 other-store-0.h 6379 @ other other-store-1.h 6379 new reported role is master", "other"},
	} {
		if got := masterOf(tc.channel, tc.payload); got != tc.master {
			t.Errorf("%s %q: dispatched to %q, want %q", tc.channel, tc.payload, got, tc.master)
		}
	}
	for _, ch := range HealthEvents {
		if !slices.Contains(subscribedChannels(), ch) {
			t.Errorf("the observer does not subscribe to %s", ch)
		}
	}
}
