//go:build datapath

package datapath

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// Day2Case is one line of bin/results/day2.json.
type Day2Case struct {
	Name                  string  `json:"name"`
	AcknowledgedWrites    int64   `json:"acknowledged_writes"`
	FailedWrites          int64   `json:"failed_writes"`
	AcknowledgedLost      int64   `json:"acknowledged_lost"` // every acknowledged write later missing or rolled back (went_backwards), not only the final read-back
	PrimaryChanges        int     `json:"primary_changes"`
	StoreRestarts         int     `json:"store_restarts"`
	MastersSeenMax        int     `json:"masters_seen_max"` // most servers reporting role:master at one moment, sampled >= 2/s
	SecondsWithoutPrimary float64 `json:"seconds_without_primary"`
}

var day2Mu sync.Mutex

// recordDay2Case replaces (by Name) or appends c in $DATAPATH_RESULTS_DIR/day2.json, written as
// {"cases":[...]} sorted by name; safe for concurrent callers in one process.
func recordDay2Case(t *testing.T, c Day2Case) {
	t.Helper()
	day2Mu.Lock()
	defer day2Mu.Unlock()
	path := filepath.Join(resultsDir(t), "day2.json")
	var file struct {
		Cases []Day2Case `json:"cases"`
	}
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &file); err != nil {
			t.Logf("day2.json unreadable, starting it anew: %v", err)
			file.Cases = nil
		}
	}
	kept := file.Cases[:0]
	for _, old := range file.Cases {
		if old.Name != c.Name {
			kept = append(kept, old)
		}
	}
	file.Cases = append(kept, c)
	sort.Slice(file.Cases, func(i, j int) bool { return file.Cases[i].Name < file.Cases[j].Name })
	raw, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Errorf("encoding day2.json: %v", err)
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		t.Errorf("writing day2.json: %v", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Errorf("writing day2.json: %v", err)
	}
	line, _ := json.Marshal(c)
	t.Logf("day2: %s", line)
}
