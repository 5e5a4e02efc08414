package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ReadyLine is what the child prints on stdout once it serves.
const ReadyLine = "sealmesh-tunnel-ready"

// Process is a tunnel process (a host of pods' Nebula instances): the agent's
// child, or one a previous agent started (adopted after a restart).
type Process struct {
	pid int
	// start is the process's start time (clock ticks after boot): with the
	// PID it names the process, so a reused PID is never mistaken for it.
	start uint64
	cmd   *exec.Cmd // nil when adopted
	done  chan struct{}
	err   error
}

// Start runs `<binary> <args...>` in a network namespace of its own and
// waits until it prints ReadyLine. Its stderr (its log) goes to logTo.
//
// The namespace is new and empty (a loopback device, down) and ends with
// the process. A tunnel process reaches networks only through what it made
// inside pods' namespaces: its instances' UDP sockets and TUN devices. What
// Nebula does on whatever thread it happens to run on stays out of the
// node's namespace: each instance's lighthouse update lists the interfaces
// of its thread's namespace (every ten seconds, and once at its start),
// which in the node's namespace is a netlink dump of every pod's veth, so a
// node's pods cost it in the square of their number; and a socket made
// outside a pod's namespace by mistake would be a hole in the pod's network
// policy, where here it reaches nothing.
func Start(binary string, args []string, logTo io.Writer, timeout time.Duration) (*Process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Stderr = logTo
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tunnel: start %s: %w", binary, err)
	}
	p := &Process{pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	p.start, _, _ = stat(p.pid)

	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == ReadyLine {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, out) // keep the pipe drained until the child exits
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("tunnel: %s exited before it was up (%v); see its log", binary, p.err)
	case <-time.After(timeout):
		p.Stop(time.Second)
		return nil, fmt.Errorf("tunnel: %s not up after %s; see its log", binary, timeout)
	}
}

// Adopt takes over a tunnel a previous agent started, named by its PID and
// start time; it fails if that process no longer runs.
func Adopt(pid int, start uint64) (*Process, error) {
	if st, alive, err := stat(pid); err != nil || !alive || st != start {
		return nil, fmt.Errorf("tunnel: pid %d (start %d) is not running", pid, start)
	}
	p := &Process{pid: pid, start: start, done: make(chan struct{})}
	go func() {
		// Not our child: nothing to wait on, so look.
		for {
			time.Sleep(500 * time.Millisecond)
			if st, alive, err := stat(pid); err != nil || !alive || st != start {
				close(p.done)
				return
			}
		}
	}()
	return p, nil
}

// stat reads a process's start time and whether it runs (a zombie does not).
func stat(pid int) (start uint64, alive bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then: state (3), ..., starttime (22).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("tunnel: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("tunnel: /proc/%d/stat: unexpected format", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] != "Z" && f[0] != "X", err
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.pid }

// StartTime is the process's start time, for Adopt.
func (p *Process) StartTime() uint64 { return p.start }

// Alive reports whether the process still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop asks the process to stop (SIGTERM), and kills it after grace.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("tunnel: stop pid %d: %w", p.pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// signal signals the process if it is still the one started (a PID reused by
// another process is left alone).
func (p *Process) signal(sig syscall.Signal) error {
	if st, alive, err := stat(p.pid); err != nil || !alive || st != p.start {
		return nil
	}
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
