// Package netlab builds small networks of Linux network namespaces for the demo and
// the end-to-end tests: named namespaces, veth pairs, routes, processes started
// inside a namespace, ICMP ping and packet capture. Everything it makes is recorded
// and removed by Close, processes by the PID it started.
package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Lab owns namespaces and processes.
type Lab struct {
	Prefix string
	mu     sync.Mutex
	nss    []*NS
	procs  []*exec.Cmd
}

// NS is a named network namespace.
type NS struct {
	Name string // as in `ip netns`
	Path string // /run/netns/<Name>
}

// New returns an empty lab whose namespaces are named <prefix>-<name>.
func New(prefix string) *Lab { return &Lab{Prefix: prefix} }

// Root reports whether the caller may create namespaces.
func Root() bool { return os.Geteuid() == 0 }

// NS creates a named namespace with its loopback up.
func (l *Lab) NS(name string) (*NS, error) {
	full := l.Prefix + "-" + name
	// The goroutine's thread is moved into the new namespace and never back:
	// leaving it locked makes the runtime end the thread when the goroutine
	// exits, so no other goroutine ever runs in that namespace by accident.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.NewNamed(full)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("netlab: create netns %s: %w", full, err)
	}
	n := &NS{Name: full, Path: filepath.Join("/run/netns", full)}
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	if err := n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		return nil, fmt.Errorf("netlab: %s: loopback up: %w", full, err)
	}
	return n, nil
}

// Do runs f on an OS thread inside the namespace. Sockets f opens stay in it.
func (n *NS) Do(f func() error) error {
	return ns.WithNetNSPath(n.Path, func(ns.NetNS) error { return f() })
}

var vethSeq atomic.Uint64

// Veth connects a and b with a veth pair, giving each end a name and an address
// (CIDR), and brings both up.
func Veth(a *NS, aName, aAddr string, b *NS, bName, bAddr string) error {
	// Temporary names unique in this process, so concurrent labs cannot clash
	// before the ends get their final names.
	id := vethSeq.Add(1)
	tmpA, tmpB := fmt.Sprintf("smtmp%da", id), fmt.Sprintf("smtmp%db", id)
	return a.Do(func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tmpA}, PeerName: tmpB}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("netlab: veth %s-%s: %w", aName, bName, err)
		}
		peer, err := netlink.LinkByName(tmpB)
		if err != nil {
			return err
		}
		bh, err := netns.GetFromPath(b.Path)
		if err != nil {
			return err
		}
		defer bh.Close()
		if err := netlink.LinkSetNsFd(peer, int(bh)); err != nil {
			return fmt.Errorf("netlab: move %s to %s: %w", bName, b.Name, err)
		}
		if err := configure(tmpA, aName, aAddr); err != nil {
			return err
		}
		return b.Do(func() error { return configure(tmpB, bName, bAddr) })
	})
}

func configure(tmp, name, cidr string) error {
	l, err := netlink.LinkByName(tmp)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetName(l, name); err != nil {
		return fmt.Errorf("netlab: rename %s: %w", name, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("netlab: address %s on %s: %w", cidr, name, err)
	}
	return netlink.LinkSetUp(l)
}

// DefaultRoute sends everything not on a link via gw.
func (n *NS) DefaultRoute(gw string) error {
	return n.Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)})
	})
}

// Forward enables IPv4 forwarding in the namespace.
func (n *NS) Forward() error {
	// /proc/sys/net belongs to the netns of whoever opens it.
	return n.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) })
}

// Start runs a command inside the namespace, its output to logPath. The process
// leads a new process group, so Close also ends the children it starts.
func (l *Lab) Start(n *NS, logPath string, name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// fork happens on the thread Do has moved into the namespace.
	if err := n.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", filepath.Base(name), n.Name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	go cmd.Wait() // reap; Close looks at ProcessState
	return cmd, nil
}

// Stop ends one process group started by Start: SIGTERM, then SIGKILL after grace.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(-pgid, 0) != nil { // the whole group is gone
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	for i := 0; i < 100 && syscall.Kill(-pgid, 0) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops every process group (newest first) and deletes every namespace;
// deleting a namespace removes the interfaces in it. It reports what it could not
// remove.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		Stop(procs[i], 5*time.Second)
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		if err := netns.DeleteNamed(nss[i].Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netlab: delete netns %s: %w", nss[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes one namespace of the lab (its interfaces with it) before
// Close; its name may then be used again.
func (l *Lab) Remove(n *NS) error {
	l.mu.Lock()
	l.nss = slices.DeleteFunc(l.nss, func(o *NS) bool { return o == n })
	l.mu.Unlock()
	if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: delete netns %s: %w", n.Name, err)
	}
	return nil
}
