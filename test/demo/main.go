// Command demo runs sealmesh on one machine (make demo): a coordinator, a
// lighthouse and a node in network namespaces, two pods networked by a real CNI
// chain, pod A pinging pod B over Nebula. It removes everything it made, also when
// interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
)

func main() {
	bin := flag.String("bin", "bin", "directory with the sealmesh binaries and the reference CNI plugins")
	flag.Parse()
	if !netlab.Root() {
		fmt.Fprintln(os.Stderr, "demo: needs root (network namespaces, TUN devices): run `sudo make demo`")
		os.Exit(1)
	}
	if err := run(*bin); errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo: interrupted; everything it made is removed")
		os.Exit(130)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func run(bin string) (err error) {
	bin, err = filepath.Abs(bin)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "sealmesh-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	m, err := mesh.Up(ctx, mesh.Options{BinDir: bin, WorkDir: work, Prefix: fmt.Sprintf("smdemo%d", os.Getpid()%100000), Say: say})
	// Cleanup runs whatever happened, interrupt included: the signal only
	// cancels ctx, so this deferred call still runs.
	defer func() {
		say("cleaning up: CNI DEL for each pod, stopping every process, deleting namespaces")
		if cerr := m.Close(context.Background()); cerr != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", cerr)
			if err == nil {
				err = cerr
			}
		} else {
			say("clean")
		}
	}()
	if err != nil {
		return err
	}

	var pods []*mesh.Pod
	for _, name := range []string{"pod-a", "pod-b"} {
		say("CNI ADD %s: bridge + host-local, then sealmesh-cni (enrols with simulated SNP evidence, starts Nebula in the pod's netns)", name)
		p, err := m.AddPod(ctx, name)
		if err != nil {
			return err
		}
		say("  %s: eth0 %s (underlay), %s %s and %s (Nebula overlay)", name, p.UnderlyIP, mesh.NebulaIf, p.OverlayIP, p.OverlayIP6)
		pods = append(pods, p)
	}
	a, b := pods[0], pods[1]

	say("pod-a pings pod-b on its Nebula IP %s", b.OverlayIP)
	res, err := a.NS.Ping(b.OverlayIP, 5, 5*time.Second)
	if err != nil {
		return err
	}
	say("  %s", res)
	if res.Received == 0 {
		return fmt.Errorf("no reply from pod-b over Nebula\nagent log:\n%s", m.Tail("agent.log"))
	}

	say("pod-a pings pod-b on its Nebula IPv6 address %s", b.OverlayIP6)
	res6, err := a.NS.Ping(b.OverlayIP6, 3, 5*time.Second)
	if err != nil {
		return err
	}
	say("  %s", res6)

	say("meshctl status --owner-key owner.key")
	out, err := m.Meshctl("status", "--owner-key", m.OwnerKey())
	if err != nil {
		return err
	}
	fmt.Print(out)
	return ctx.Err()
}
