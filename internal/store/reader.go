package store

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// readers follow subscription connections: each value read goes to onMessage, and
// onEnd runs once when the connection fails or is closed (respConn.close).
type readers interface {
	follow(rc *respConn, onMessage func(any), onEnd func())
	stop()
}

// goroutineReaders follows each connection with a goroutine of its own: the fallback
// where the one-goroutine loop cannot watch a connection (not a socket, or not Linux).
type goroutineReaders struct{}

func (goroutineReaders) follow(rc *respConn, onMessage func(any), onEnd func()) {
	go func() {
		defer onEnd()
		defer rc.close()
		for {
			v, err := rc.read(0)
			if err != nil {
				return
			}
			onMessage(v)
		}
	}()
}

func (goroutineReaders) stop() {}

// errIncomplete says the bytes end inside a value.
var errIncomplete = errors.New("resp: incomplete value")

// parseValue reads one value from the start of b and says how many bytes it took.
func parseValue(b []byte) (any, int, error) {
	br := bytes.NewReader(b)
	rc := &respConn{r: bufio.NewReaderSize(br, 64)}
	v, err := rc.readValue(0)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, 0, errIncomplete
	}
	if err != nil {
		return nil, 0, err
	}
	return v, len(b) - br.Len() - rc.r.Buffered(), nil
}
