//go:build datapath

package datapath

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// proc is one child process: its own process group (so a kill takes the boot script's
// helpers too) and SIGKILL when the harness dies (Pdeathsig).
type proc struct {
	name    string
	argv    []string
	env     []string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Every process goes through one goroutine locked to its OS thread: Pdeathsig fires when
// the thread that started a child exits, and this thread lives as long as the harness.
var spawner = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
}()

// live holds every running process, for the interrupt handler.
var live = struct {
	sync.Mutex
	procs map[*proc]bool
}{procs: map[*proc]bool{}}

func startProc(name string, argv, env []string, logPath string) (*proc, error) {
	p := &proc{name: name, argv: argv, env: env, logPath: logPath}
	return p, p.start()
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.name)
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error, 1)
	spawner <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	live.Lock()
	live.procs[p] = true
	live.Unlock()
	done := p.done
	go func() {
		err := cmd.Wait()
		f.Close()
		live.Lock()
		delete(live.procs, p)
		live.Unlock()
		p.err = err
		close(done)
	}()
	return nil
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends sig to the process group and, for SIGKILL, waits for the exit.
func (p *proc) kill(sig syscall.Signal) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	if sig == syscall.SIGKILL {
		<-p.done
	}
}

// stop asks politely, then insists.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	p.kill(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill(syscall.SIGKILL)
	}
}

// killAll kills every process still running; used by cleanups and the interrupt handler.
func killAll() {
	live.Lock()
	procs := make([]*proc, 0, len(live.procs))
	for p := range live.procs {
		procs = append(procs, p)
	}
	live.Unlock()
	for _, p := range procs {
		if p.cmd != nil && p.cmd.Process != nil {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}
