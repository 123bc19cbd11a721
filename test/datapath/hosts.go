//go:build datapath

package datapath

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
)

// The harness maps the rendered host names to loopback addresses by adding one marked
// block to /etc/hosts, and restores the file afterwards: to its exact former bytes when
// nobody else touched it meanwhile, else by removing only its own block.
const (
	hostsBegin = "# BEGIN session-operator data-path harness"
	hostsEnd   = "# END session-operator data-path harness"
)

type hostsEdit struct {
	path     string
	original []byte
	edited   []byte
	once     sync.Once
	err      error
}

// addHosts writes entries (host name -> address) into path. A block left by a run that
// could not clean up (killed with SIGKILL) is removed first; what remains counts as the
// original.
func addHosts(path string, entries map[string]string) (*hostsEdit, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	original := stripBlock(raw)
	var b bytes.Buffer
	b.Write(original)
	if len(original) > 0 && !bytes.HasSuffix(original, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString(hostsBegin + fmt.Sprintf(" (pid %d)\n", os.Getpid()))
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s\t%s\n", entries[n], n)
	}
	b.WriteString(hostsEnd + "\n")
	h := &hostsEdit{path: path, original: original, edited: b.Bytes()}
	// Written in place (not renamed over), so a bind-mounted /etc/hosts stays the same file.
	if err := writeInPlace(path, h.edited); err != nil {
		return nil, err
	}
	return h, nil
}

// restore puts the file back; safe to call more than once and from a signal handler.
func (h *hostsEdit) restore() error {
	h.once.Do(func() {
		cur, err := os.ReadFile(h.path)
		if err != nil {
			h.err = err
			return
		}
		want := h.original
		if !bytes.Equal(cur, h.edited) {
			// Someone else edited the file while we ran: keep their change, drop our block.
			want = stripBlock(cur)
		}
		h.err = writeInPlace(h.path, want)
	})
	return h.err
}

func stripBlock(raw []byte) []byte {
	s := string(raw)
	for {
		i := strings.Index(s, hostsBegin)
		if i < 0 {
			return []byte(s)
		}
		j := strings.Index(s[i:], hostsEnd)
		if j < 0 {
			return []byte(s[:i])
		}
		end := i + j + len(hostsEnd)
		if end < len(s) && s[end] == '\n' {
			end++
		}
		s = s[:i] + s[end:]
	}
}

func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
