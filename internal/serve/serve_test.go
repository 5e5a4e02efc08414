package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// start serves a handler that reads the whole body with o, on loopback.
func start(t *testing.T, o Options) string {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}), o)
	go func() { done <- Run(ctx, srv, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return l.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits (at most a generous bound: this asserts that the
// server closes, not how fast) until the server closes c.
func closedByServer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, err := c.Read(make([]byte, 512))
		if err == nil {
			continue // an error answer, then the close
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the server kept the connection open", what)
		}
		return
	}
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a request: %s", resp.Status)
	}
}

// Finding 3 of the attack review: the API server set only a header timeout,
// so a body that never finished and a connection that never sent another
// request stayed open for as long as the client liked.
func TestTimeouts(t *testing.T) {
	short := Options{Header: 300 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond}
	addr := start(t, short)

	t.Run("slow headers", func(t *testing.T) {
		c := dial(t, addr)
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\n")
		closedByServer(t, c, "headers never finished")
	})
	t.Run("slow body", func(t *testing.T) {
		c := dial(t, addr)
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
		closedByServer(t, c, "a body that never finished")
	})
	t.Run("idle", func(t *testing.T) {
		c := dial(t, addr)
		roundTrip(t, c)
		closedByServer(t, c, "a kept-alive connection with no next request")
	})
}

func TestConnectionCaps(t *testing.T) {
	long := Options{Header: time.Minute, Read: time.Minute, Write: time.Minute, Idle: time.Minute}
	for _, tc := range []struct {
		name       string
		total, per int
	}{
		{"per source", 0, 3},
		{"total", 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := long
			o.Total, o.PerSource = tc.total, tc.per
			addr := start(t, o)
			var held []net.Conn
			for range 3 {
				c := dial(t, addr)
				roundTrip(t, c)
				held = append(held, c)
			}
			closedByServer(t, dial(t, addr), "a connection past the cap")
			held[0].Close()
			// The server notices the close when its read of the next request fails.
			deadline := time.Now().Add(20 * time.Second)
			for {
				c := dial(t, addr)
				fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					resp.Body.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no connection accepted after one of those held closed")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// Every preset bounds everything: a server built from one of them cannot be
// held open by a client.
func TestPresets(t *testing.T) {
	for name, o := range map[string]Options{"API": API, "Health": Health, "Local": Local} {
		if o.Header <= 0 || o.Read <= 0 || o.Write <= 0 || o.Idle <= 0 || o.Total <= 0 {
			t.Errorf("%s: %+v leaves something unbounded", name, o)
		}
		if name != "Local" && (o.PerSource <= 0 || o.PerSource > o.Total) {
			t.Errorf("%s: PerSource %d, want 1..Total", name, o.PerSource)
		}
	}
}
