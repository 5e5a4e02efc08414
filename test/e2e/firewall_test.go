package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/mesh"
)

// TestFirewall: the manifest's rules between groups are what the pods' Nebula
// enforces. Pods in namespace "db" take the role db (podSelector); the others
// the role pod. pods may reach db on TCP 5432, UDP 53 and ICMP; nothing else
// is allowed, in either direction.
func TestFirewall(t *testing.T) {
	m := up(t, func(o *mesh.Options) {
		o.Roles = []mesh.Role{{Name: "db", Groups: []string{"db"}, Namespaces: []string{"db"}}}
		o.Firewall = []mesh.FirewallRule{
			{From: []string{"pods"}, To: "db", Proto: "tcp", Port: "5432"},
			{From: []string{"pods"}, To: "db", Proto: "udp", Port: "53"},
			{From: []string{"pods"}, To: "db", Proto: "icmp", Port: "any"},
		}
	})
	ctx := context.Background()
	web, err := m.AddPod(ctx, "pod-web")
	if err != nil {
		t.Fatal(err)
	}
	db, err := m.AddPodIn(ctx, "pod-db", "db")
	if err != nil {
		t.Fatal(err)
	}
	// Listeners on the db pod's overlay address for allowed and denied ports,
	// and on the web pod's for the reverse direction.
	for _, port := range []int{5432, 6000} {
		listenTCP(t, db, port)
	}
	listenTCP(t, web, 8080)
	udp := map[int]chan string{53: listenUDP(t, db, 53), 54: listenUDP(t, db, 54)}

	// The first packet may wait for the handshake: let TCP/5432 (allowed)
	// open the tunnel before the checks that expect silence. Not ICMP: Nebula's
	// connection tracking keys ICMP without ports, so an echo web → db would
	// let db's echoes to web through for a while as replies.
	var opened error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if opened = dialTCP(web, db.OverlayIP, 5432); opened == nil {
			break
		}
	}
	if opened != nil {
		t.Fatalf("pods → db tcp/5432 (allowed) never opened: %v", opened)
	}
	tests := []struct {
		name  string
		check func() error
		allow bool
	}{
		{"pods → db tcp/5432", func() error { return dialTCP(web, db.OverlayIP, 5432) }, true},
		{"pods → db tcp/6000", func() error { return dialTCP(web, db.OverlayIP, 6000) }, false},
		{"pods → db udp/53", func() error { return sendUDP(web, db.OverlayIP, 53, udp[53]) }, true},
		{"pods → db udp/54", func() error { return sendUDP(web, db.OverlayIP, 54, udp[54]) }, false},
		{"db → pods tcp/8080", func() error { return dialTCP(db, web.OverlayIP, 8080) }, false},
		{"db → pods icmp", func() error { return ping(db, web.OverlayIP) }, false},
		{"pods → db icmp", func() error { return ping(web, db.OverlayIP) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			switch {
			case tt.allow && err != nil:
				t.Fatalf("allowed by the manifest, but: %v", err)
			case !tt.allow && err == nil:
				t.Fatal("denied by the manifest, but it went through")
			}
		})
	}
}

func ping(from *mesh.Pod, to netip.Addr) error {
	r, err := from.NS.Ping(to, 2, 2*time.Second)
	if err == nil && r.Received == 0 {
		err = fmt.Errorf("no reply")
	}
	return err
}

func listenTCP(t *testing.T, p *mesh.Pod, port int) {
	t.Helper()
	var ln net.Listener
	if err := p.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.OverlayIP, uint16(port)).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

func dialTCP(from *mesh.Pod, to netip.Addr, port int) error {
	return from.NS.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, uint16(port)).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 2)
		_, err = c.Read(b)
		return err
	})
}

func listenUDP(t *testing.T, p *mesh.Pod, port int) chan string {
	t.Helper()
	c, err := p.NS.ListenUDP(netip.AddrPortFrom(p.OverlayIP, uint16(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 16)
	go func() {
		b := make([]byte, 64)
		for {
			n, _, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			ch <- string(b[:n])
		}
	}()
	return ch
}

// sendUDP sends a few datagrams and reports whether one arrived.
func sendUDP(from *mesh.Pod, to netip.Addr, port int, got chan string) error {
	for range 3 {
		if err := from.NS.SendUDP(netip.AddrPortFrom(to, uint16(port)), []byte("hello")); err != nil {
			return err
		}
		select {
		case <-got:
			return nil
		case <-time.After(700 * time.Millisecond):
		}
	}
	return fmt.Errorf("no datagram arrived on port %d", port)
}
