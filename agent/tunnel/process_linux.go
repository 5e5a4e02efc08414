package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// ReadyLine is what the child prints on stdout once Nebula is up.
const ReadyLine = "sealmesh-tunnel-ready"

// Process is a Nebula child running inside a pod's network namespace.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs `<binary> <args...>` inside the network namespace at netnsPath, hands it
// cfg on stdin (the private key travels through a pipe, never a file), and waits
// until it reports Nebula up. Its stderr (Nebula's log) goes to logTo.
func Start(binary string, args []string, netnsPath string, cfg []byte, logTo io.Writer, timeout time.Duration) (*Process, error) {
	cmd := exec.Command(binary, args...)
	cmd.Stdin = bytes.NewReader(cfg)
	cmd.Stderr = logTo
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// fork/exec happens on the calling OS thread, which ns.WithNetNSPath has
	// locked and moved into the pod's namespace: the child starts there, and
	// so does every thread it makes.
	if err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error { return cmd.Start() }); err != nil {
		return nil, fmt.Errorf("tunnel: start in %s: %w", netnsPath, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}

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
		return nil, fmt.Errorf("tunnel: nebula exited before it was up (%v); see its log", p.err)
	case <-time.After(timeout):
		p.Stop(time.Second)
		return nil, fmt.Errorf("tunnel: nebula not up after %s; see its log", timeout)
	}
}

// Pid is the child's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether the child still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop asks the child to stop (SIGTERM), and kills it after grace.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("tunnel: stop pid %d: %w", p.Pid(), err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}
