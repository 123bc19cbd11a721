//go:build linux

package store

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// epollReaders follows every subscription connection from one goroutine. A goroutine
// parked on each connection would cost a stack per Sentinel (4 KiB or more, some 60 MiB
// at 15,000 Sentinels) to wait for events that almost never come; here a quiet
// connection costs its socket and a map entry, and the read buffer is shared.
type epollReaders struct {
	epfd int
	wake int // an eventfd that ends the loop

	mu      sync.Mutex
	next    int32
	conns   map[int32]*polledConn
	stopped bool

	buf []byte // owned by the loop
}

// polledConn is one connection the loop reads; pending holds the start of a message
// that arrived in pieces.
type polledConn struct {
	id        int32
	rc        *respConn
	raw       syscall.RawConn
	onMessage func(any)
	onEnd     func()
	pending   []byte
	endOnce   sync.Once
}

func newReaders() readers {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return goroutineReaders{}
	}
	wake, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		_ = syscall.Close(epfd)
		return goroutineReaders{}
	}
	r := &epollReaders{epfd: epfd, wake: int(wake), conns: map[int32]*polledConn{}, buf: make([]byte, 4096)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: -1}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, r.wake, &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(r.wake)
		return goroutineReaders{}
	}
	go r.loop()
	return r
}

// follow registers rc; onMessage gets each value read, onEnd runs once when the
// connection fails or rc.close is called. A connection the loop cannot watch is
// followed by a goroutine instead.
func (r *epollReaders) follow(rc *respConn, onMessage func(any), onEnd func()) {
	sc, ok := rc.c.(syscall.Conn)
	if !ok {
		goroutineReaders{}.follow(rc, onMessage, onEnd)
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		goroutineReaders{}.follow(rc, onMessage, onEnd)
		return
	}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		goroutineReaders{}.follow(rc, onMessage, onEnd)
		return
	}
	r.next++
	if r.next < 0 {
		r.next = 0
	}
	pc := &polledConn{id: r.next, rc: rc, raw: raw, onMessage: onMessage, onEnd: onEnd}
	r.conns[pc.id] = pc
	r.mu.Unlock()
	// Bytes the handshake's reads buffered past its replies belong to the first message.
	if n := rc.r.Buffered(); n > 0 {
		b, _ := rc.r.Peek(n)
		pc.pending = append([]byte(nil), b...)
	}
	rc.r = nil // the loop reads the socket itself from now on
	// A deadline the handshake left would fail the first read after it passed, and
	// drop that message with the connection.
	_ = rc.c.SetReadDeadline(time.Time{})
	if !rc.setEnder(func() { r.end(pc) }) {
		r.end(pc)
		return
	}
	if len(pc.pending) > 0 {
		r.deliver(pc, nil) // before the loop can read pc too
	}
	var addErr error
	ctlErr := raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: pc.id}
		addErr = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if ctlErr != nil || addErr != nil {
		r.end(pc)
	}
}

// end unregisters and closes the connection, then tells its owner, once.
func (r *epollReaders) end(pc *polledConn) {
	pc.endOnce.Do(func() {
		r.mu.Lock()
		delete(r.conns, pc.id)
		r.mu.Unlock()
		_ = pc.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
		_ = pc.rc.c.Close()
		// Not on the caller's goroutine: rc.close is called with the observer's lock held.
		go pc.onEnd()
	})
}

func (r *epollReaders) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(r.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == -1 {
				_ = syscall.Close(r.epfd)
				_ = syscall.Close(r.wake)
				return
			}
			r.mu.Lock()
			pc := r.conns[ev.Fd]
			r.mu.Unlock()
			if pc != nil {
				r.read(pc)
			}
		}
	}
}

// read takes what the socket holds (the descriptor is non-blocking) and hands on every
// whole message in it.
func (r *epollReaders) read(pc *polledConn) {
	var n int
	var rerr error
	err := pc.raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), r.buf)
		return true // never park the loop on one connection
	})
	switch {
	case err != nil:
		r.end(pc)
		return
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EINTR):
		return
	case rerr != nil || n <= 0: // an error, or the peer closed
		r.end(pc)
		return
	}
	r.deliver(pc, r.buf[:n])
}

// deliver parses pc's pending bytes followed by data and keeps the incomplete rest.
func (r *epollReaders) deliver(pc *polledConn, data []byte) {
	if len(pc.pending) > 0 {
		pc.pending = append(pc.pending, data...)
		data = pc.pending
	}
	for len(data) > 0 {
		v, used, err := parseValue(data)
		if errors.Is(err, errIncomplete) {
			break
		}
		if err != nil {
			r.end(pc)
			return
		}
		pc.onMessage(v)
		data = data[used:]
	}
	if len(data) > maxRespLen {
		r.end(pc)
		return
	}
	pc.pending = append(pc.pending[:0:0], data...) // data may be the shared buffer
	if len(pc.pending) == 0 {
		pc.pending = nil
	}
}

// stop ends the loop; connections still registered are closed and told.
func (r *epollReaders) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	var left []*polledConn
	for _, pc := range r.conns {
		left = append(left, pc)
	}
	r.mu.Unlock()
	for _, pc := range left {
		r.end(pc)
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	_, _ = syscall.Write(r.wake, one)
}
