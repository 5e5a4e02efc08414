package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/netlab"
)

// stream is a TCP connection from one namespace to an echo server in
// another, over the overlay.
type stream struct {
	conn net.Conn
	rd   *bufio.Scanner
	sent int
}

// openStream starts an echo server on to:7000 in server's namespace and
// connects to it from client's, retrying while the tunnel comes up.
func openStream(t *testing.T, server *netlab.NS, to netip.Addr, client *netlab.NS) *stream {
	t.Helper()
	addr := netip.AddrPortFrom(to, 7000).String()
	var ln net.Listener
	if err := server.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintln(c, sc.Text())
		}
	}()
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = client.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
			return err
		}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("stream to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &stream{conn: conn, rd: bufio.NewScanner(conn)}
}

// keep sends a line every 50 ms for d and checks each comes back.
func (s *stream) keep(t *testing.T, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		s.conn.SetDeadline(time.Now().Add(3 * time.Second))
		line := fmt.Sprintf("line %d", s.sent)
		if _, err := fmt.Fprintln(s.conn, line); err != nil {
			t.Fatalf("stream broke after %d lines: %v", s.sent, err)
		}
		if !s.rd.Scan() || s.rd.Text() != line {
			t.Fatalf("stream broke after %d lines: got %q, %v", s.sent, s.rd.Text(), s.rd.Err())
		}
		s.sent++
	}
}
