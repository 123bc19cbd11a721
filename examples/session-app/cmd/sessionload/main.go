// Command sessionload drives the reference session app: it creates sessions,
// keeps writing to them, and later checks that none was lost.
//
//	sessionload create -urls http://a:8080,http://b:8080 -n 1000 -out sessions.json
//	sessionload run    -urls http://a:8080,http://b:8080 -in sessions.json -duration 30s -clients 4 -events writes.jsonl
//	sessionload verify -urls http://c:8080 -in sessions.json -report verify.json
//
// Sessions are named by the X-Session-Id header, so no cookie jar is needed.
// The state file records each session and the highest counter the app
// acknowledged (HTTP 200) for it; verify counts a session as lost when the app
// no longer knows it (401) or reports a counter below that acknowledged value.
// Every command prints a one-line JSON summary on stdout and exits 1 when it
// saw a failure (create: a login failed after its retries; run: an acknowledged counter went
// backwards; verify: a session lost or not verifiable); 2 on usage errors.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `sessionload: create, exercise and verify sessions of the reference session app.

Usage:
  sessionload create -urls URL[,URL...] -n N [-bumps K] [-concurrency C] [-out FILE] [-retries R]
  sessionload run    -urls URL[,URL...] -in FILE [-out FILE] [-duration D] [-clients C] [-op bump|peek] [-events FILE]
  sessionload verify -urls URL[,URL...] -in FILE [-report FILE] [-retries R]

Run "sessionload COMMAND -h" for the flags of one command.

Exit status: 0 all good, 1 failures seen (lost sessions, failed logins,
acknowledged counters going backwards, unverifiable sessions), 2 bad usage.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var cmd func([]string, io.Writer, io.Writer) int
	switch args[0] {
	case "create":
		cmd = cmdCreate
	case "run":
		cmd = cmdRun
	case "verify":
		cmd = cmdVerify
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sessionload: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}

// newFlags makes a FlagSet whose -h output starts with the command's purpose.
func newFlags(name, purpose string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sessionload "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "sessionload %s: %s\n\nFlags:\n", name, purpose)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses; ok=false means return code now (0 after -h, 2 on errors).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return 2, false
	}
	return 0, true
}

// parseURLs splits a comma-separated list of app base URLs.
func parseURLs(s string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u == "" {
			continue
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("%q is not an http(s) URL", u)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-urls: at least one app base URL is required")
	}
	return out, nil
}
