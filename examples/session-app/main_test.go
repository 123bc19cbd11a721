package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The whole program in-process: env in, HTTP served, graceful stop on cancel
// (what SIGTERM does in main).
func TestRunServesAndShutsDown(t *testing.T) {
	env := map[string]string{"SESSION_MODE": "Sticky", "POD_NAME": "web-0"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	env["PORT"] = strconv.Itoa(freePort(t))
	go func() {
		done <- run(ctx, func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			func(a string) { addrCh <- a })
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not start listening")
	}
	resp, err := http.Post("http://"+addr+"/login", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var s sessionResponse
	_ = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if resp.StatusCode != 200 || s.Instance != "web-0" || !validSessionID(s.ID) {
		t.Fatalf("login: %d %+v", resp.StatusCode, s)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}

func TestRunRejectsBadEnv(t *testing.T) {
	err := run(context.Background(), func(k string) (string, bool) {
		if k == "SESSION_MODE" {
			return "Nope", true
		}
		return "", false
	}, nil)
	if err == nil {
		t.Fatal("bad SESSION_MODE accepted")
	}
}
