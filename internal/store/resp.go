package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// respConn is one RESP2 connection to a Sentinel or a server. The observer holds
// thousands of them (a subscription per watched Sentinel), so each carries what it needs
// and no more: a small read buffer (dropped when a subscription is handed to the
// readers), no write buffer (a command is one Write) and no goroutine of its own. A reply
// larger than the buffer is read in pieces.
type respConn struct {
	c net.Conn
	r *bufio.Reader
	// ender, when set, closes the connection for the reader that follows it, so that
	// the reader's owner hears of the end even though no read is waiting.
	mu     sync.Mutex
	closed bool
	ender  func()
}

// respReadBuffer is the read buffer of every connection. Sentinel replies are a few
// hundred bytes; events are one line.
const respReadBuffer = 512

// respError is an error reply (-ERR ...).
type respError string

func (e respError) Error() string { return string(e) }

// errNil is a null reply.
var errNil = errors.New("nil reply")

func newRespConn(c net.Conn) *respConn {
	return &respConn{c: c, r: bufio.NewReaderSize(c, respReadBuffer)}
}

// dialResp opens a connection and sends the hello commands (AUTH, CLIENT SETNAME)
// without waiting for their replies; the caller reads them with the replies it expects.
func dialResp(ctx context.Context, dial DialFunc, addr string, timeout time.Duration, username, password, name string) (*respConn, int, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(dctx, "tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	rc := newRespConn(c)
	var cmds [][]string
	if password != "" {
		if username != "" {
			cmds = append(cmds, []string{"AUTH", username, password})
		} else {
			cmds = append(cmds, []string{"AUTH", password})
		}
	}
	if name != "" {
		cmds = append(cmds, []string{"CLIENT", "SETNAME", name})
	}
	return rc, len(cmds), rc.send(timeout, cmds...)
}

// hello dials and authenticates, waiting for the hello replies.
func helloResp(ctx context.Context, dial DialFunc, addr string, timeout time.Duration, username, password, name string) (*respConn, error) {
	rc, n, err := dialResp(ctx, dial, addr, timeout, username, password, name)
	if err != nil {
		if rc != nil {
			rc.close()
		}
		return nil, err
	}
	for range n {
		if _, err := rc.read(timeout); err != nil {
			rc.close()
			return nil, err
		}
	}
	return rc, nil
}

// send writes commands in one Write, as RESP arrays of bulk strings.
func (rc *respConn) send(timeout time.Duration, cmds ...[]string) error {
	if len(cmds) == 0 {
		return nil
	}
	var b []byte
	for _, args := range cmds {
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(args)), 10)
		b = append(b, '\r', '\n')
		for _, a := range args {
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(len(a)), 10)
			b = append(b, '\r', '\n')
			b = append(b, a...)
			b = append(b, '\r', '\n')
		}
	}
	if timeout > 0 {
		_ = rc.c.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := rc.c.Write(b)
	return err
}

// read reads one reply; timeout 0 waits for ever. An error reply is returned as the
// value, not as err, so a pipeline's replies stay in step; err is a connection failure.
func (rc *respConn) read(timeout time.Duration) (any, error) {
	if timeout > 0 {
		_ = rc.c.SetReadDeadline(time.Now().Add(timeout))
	} else {
		_ = rc.c.SetReadDeadline(time.Time{})
	}
	return rc.readValue(0)
}

// maxRespDepth and maxRespLen bound what a misbehaving peer can make the observer hold.
const (
	maxRespDepth = 4
	maxRespLen   = 1 << 20
)

func (rc *respConn) readValue(depth int) (any, error) {
	line, err := rc.line()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errors.New("resp: empty line")
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return respError(line[1:]), nil
	case ':':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("resp: integer %q", line)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxRespLen {
			return nil, fmt.Errorf("resp: bulk length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxRespLen || depth >= maxRespDepth {
			return nil, fmt.Errorf("resp: array %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = rc.readValue(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("resp: unexpected %q", line)
}

// line reads one CRLF-terminated line, whatever the buffer size.
func (rc *respConn) line() ([]byte, error) {
	var out []byte
	for {
		frag, err := rc.r.ReadSlice('\n')
		if err == nil {
			if out == nil {
				out = frag
			} else {
				out = append(out, frag...)
			}
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		out = append(out, frag...)
		if len(out) > maxRespLen {
			return nil, errors.New("resp: line too long")
		}
	}
	if len(out) < 2 || out[len(out)-2] != '\r' {
		return nil, errors.New("resp: line without CRLF")
	}
	return out[:len(out)-2], nil
}

func (rc *respConn) close() {
	rc.mu.Lock()
	rc.closed = true
	ender := rc.ender
	rc.mu.Unlock()
	if ender != nil {
		ender()
		return
	}
	_ = rc.c.Close()
}

// setEnder hands close to a reader; false when the connection was closed already.
func (rc *respConn) setEnder(f func()) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return false
	}
	rc.ender = f
	return true
}

// do sends one command and reads its reply; an error reply becomes err.
func (rc *respConn) do(timeout time.Duration, args ...string) (any, error) {
	if err := rc.send(timeout, args); err != nil {
		return nil, err
	}
	v, err := rc.read(timeout)
	if err != nil {
		return nil, err
	}
	if e, ok := v.(respError); ok {
		return nil, e
	}
	return v, nil
}

// fieldMap turns a flat [k1 v1 k2 v2 ...] reply into a map.
func fieldMap(v any) (map[string]string, error) {
	if e, ok := v.(respError); ok {
		return nil, e
	}
	if v == nil {
		return nil, errNil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("resp: want an array, got %T", v)
	}
	out := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		switch val := arr[i+1].(type) {
		case string:
			out[k] = val
		case int64:
			out[k] = strconv.FormatInt(val, 10)
		}
	}
	return out, nil
}

// fieldMaps turns an array of flat maps (SENTINEL REPLICAS) into maps.
func fieldMaps(v any) ([]map[string]string, error) {
	if e, ok := v.(respError); ok {
		return nil, e
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("resp: want an array, got %T", v)
	}
	out := make([]map[string]string, 0, len(arr))
	for _, e := range arr {
		m, err := fieldMap(e)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
