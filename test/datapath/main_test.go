//go:build datapath

// Package datapath runs what the operator renders for a Store-mode SessionCluster on real
// redis-server and redis-sentinel processes, with the reference session app, and measures
// what users would feel when things fail. See README.md in this directory.
package datapath

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

var hostsUndo struct {
	sync.Mutex
	h *hostsEdit
}

func setHostsUndo(h *hostsEdit) {
	hostsUndo.Lock()
	hostsUndo.h = h
	hostsUndo.Unlock()
}

// emergencyCleanup kills every process and restores /etc/hosts; for interrupts, and as a
// last resort after the tests (their own cleanups normally did it already).
func emergencyCleanup() {
	killAll()
	hostsUndo.Lock()
	h := hostsUndo.h
	hostsUndo.Unlock()
	if h != nil {
		if err := h.restore(); err != nil {
			fmt.Fprintf(os.Stderr, "restoring /etc/hosts: %v\n", err)
		}
	}
}

// quietLogger drops go-redis's own log lines (dial failures while a primary is down are
// the point of the exercise, not news).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...interface{}) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		emergencyCleanup()
		fmt.Fprintf(os.Stderr, "datapath: %v: every process killed, /etc/hosts restored\n", s)
		os.Exit(2)
	}()
	code := m.Run()
	emergencyCleanup()
	os.Exit(code)
}
