//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
)

// A failing run's messages are printed mid-output, minutes before its end, and a CI log
// often keeps only the tail (the step summary). The recap repeats them last, so a reader
// of the tail learns why a step failed, not only which.

// failureLine is what the testing package prints for t.Error, t.Fatal and a failed test:
// "    file_test.go:123: message" and "--- FAIL: TestE2E/step (1.23s)".
var failureLine = regexp.MustCompile(`^\s+\w+_test\.go:\d+: |^\s*--- FAIL: `)

const (
	recapMaxLines = 60
	recapMaxChars = 600
)

// recap tees the test binary's stdout, keeping the failure lines. Only its copying
// goroutine touches kept and more until done is closed.
type recap struct {
	real *os.File
	w    *os.File
	done chan struct{}
	kept []string
	more int
}

// startRecap puts a pipe in front of os.Stdout; the testing package picks its writer up
// when m.Run starts, so this must run before it. On any error it does nothing.
func startRecap() *recap {
	r, w, err := os.Pipe()
	if err != nil {
		return nil
	}
	rc := &recap{real: os.Stdout, w: w, done: make(chan struct{})}
	os.Stdout = w
	go rc.copy(r)
	return rc
}

func (rc *recap) copy(r io.ReadCloser) {
	defer close(rc.done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(rc.real, line)
		if !failureLine.MatchString(line) {
			continue
		}
		if len(line) > recapMaxChars {
			line = line[:recapMaxChars] + " …"
		}
		if len(rc.kept) < recapMaxLines {
			rc.kept = append(rc.kept, line)
		} else {
			rc.more++
		}
	}
	// A line too long for the scanner: pass the rest through unread.
	_, _ = io.Copy(rc.real, r)
}

// finish restores os.Stdout and, when the run failed, prints the kept lines.
func (rc *recap) finish(failed bool) {
	if rc == nil {
		return
	}
	os.Stdout = rc.real
	_ = rc.w.Close()
	<-rc.done
	if !failed || len(rc.kept) == 0 {
		return
	}
	fmt.Fprintln(rc.real, "e2e: recap of the failures above, in the order printed:")
	for _, l := range rc.kept {
		fmt.Fprintln(rc.real, l)
	}
	if rc.more > 0 {
		fmt.Fprintf(rc.real, "e2e: and %d failure lines more above\n", rc.more)
	}
}
