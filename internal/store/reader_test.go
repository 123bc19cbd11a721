package store

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// A message that arrives in pieces is delivered once, whole; a quiet connection costs no
// goroutine; close and a peer that hangs up both end the connection, once each.
func TestReadersFollowManyQuietConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peers := make(chan net.Conn, 300)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	r := newReaders()
	defer r.stop()
	if _, ok := r.(*epollReaders); !ok && runtime.GOOS == "linux" {
		t.Fatalf("readers are %T on Linux, want the epoll loop", r)
	}

	const quiet = 200
	before := runtime.NumGoroutine()
	ended := make(chan int, quiet+1)
	var conns []*respConn
	for i := range quiet {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		rc := newRespConn(c)
		// A handshake leaves a read deadline behind; following outlives it.
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		r.follow(rc, func(any) {}, func() { ended <- i })
		conns = append(conns, rc)
	}
	var quietPeers []net.Conn
	for range quiet {
		quietPeers = append(quietPeers, <-peers)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case i := <-ended:
		t.Fatalf("quiet connection %d ended", i)
	default:
	}
	if extra := runtime.NumGoroutine() - before; extra > 10 {
		t.Fatalf("%d goroutines for %d quiet connections, want none per connection", extra, quiet)
	}

	// One connection gets a message in two pieces, then a whole one.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []any, 4)
	rc := newRespConn(c)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	r.follow(rc, func(v any) { got <- v.([]any) }, func() { ended <- -1 })
	peer := <-peers
	time.Sleep(100 * time.Millisecond) // past the handshake's deadline
	if _, err := peer.Write([]byte("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-mas")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := peer.Write([]byte("ter\r\n$4\r\nshop\r\n*3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$1\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+switch-master shop", "+sdown x"} {
		select {
		case m := <-got:
			if s := m[1].(string) + " " + m[2].(string); s != want {
				t.Fatalf("message %q, want %q", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %q", want)
		}
	}

	// The peer hangs up: the connection ends. Closing one of ours ends it too.
	_ = peer.Close()
	if i := waitEnded(t, ended); i != -1 {
		t.Fatalf("connection %d ended, want the one whose peer hung up", i)
	}
	conns[7].close()
	if i := waitEnded(t, ended); i != 7 {
		t.Fatalf("connection %d ended, want 7", i)
	}
	conns[7].close() // twice is fine
	select {
	case i := <-ended:
		t.Fatalf("connection %d ended again", i)
	case <-time.After(100 * time.Millisecond):
	}
	for _, p := range quietPeers {
		_ = p.Close()
	}
	for range quiet - 1 {
		waitEnded(t, ended)
	}
}

func waitEnded(t *testing.T, ended chan int) int {
	t.Helper()
	select {
	case i := <-ended:
		return i
	case <-time.After(5 * time.Second):
		t.Fatal("no connection ended")
		return 0
	}
}
