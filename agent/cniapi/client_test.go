package cniapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveHTTP answers on a unix socket with net/http's server, as the agent
// does, and returns the socket.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return socket
}

// The client speaks HTTP/1.0 itself; net/http's server is what it talks
// to, with answers short enough for a Content-Length and too long for one
// (then the server ends the body by closing the connection).
func TestClientAgainstNetHTTP(t *testing.T) {
	long := strings.Repeat("x", 64<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/add", func(w http.ResponseWriter, r *http.Request) {
		var req Request
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		res := AddResult{Interface: req.IfName, Address: "10.42.0.7/16", MTU: req.MTU}
		if req.PodName == "long" {
			res.Skipped = long
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /v1/del", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(Error{Error: "netns gone"})
	})
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no JSON here", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("POST /v1/status", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Second)
	})
	c := NewClient(serveHTTP(t, mux), 2*time.Second)
	ctx := context.Background()

	got, err := c.Add(ctx, &Request{IfName: "nebula1", MTU: 1300})
	if err != nil || got.Interface != "nebula1" || got.Address != "10.42.0.7/16" || got.MTU != 1300 {
		t.Errorf("Add = %+v, %v", got, err)
	}
	got, err = c.Add(ctx, &Request{IfName: "nebula1", PodName: "long"})
	if err != nil || got.Skipped != long {
		t.Errorf("Add with a %d-byte answer: %d bytes, %v", len(long), len(got.Skipped), err)
	}
	if err := c.Del(ctx, &Request{}); err == nil || err.Error() != "netns gone" {
		t.Errorf("Del = %v, want the agent's own error", err)
	}
	if err := c.Check(ctx, &Request{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Check = %v, want the status", err)
	}
	start := time.Now()
	if _, err := c.Status(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Status of an agent that does not answer = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the call outlived its 2 s timeout: %v", d)
	}
	if err := NewClient(filepath.Join(t.TempDir(), "none.sock"), time.Second).Del(ctx, &Request{}); !errors.Is(err, ErrAgentUnreachable) {
		t.Errorf("no agent: %v, want ErrAgentUnreachable", err)
	}
}

// What the client does with answers net/http's server would not send.
func TestClientRejectsBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer, err string
	}{
		{"good", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", ""},
		{"good, until EOF", "HTTP/1.1 200 OK\r\n\r\n{}", ""},
		{"body past its length", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage", ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "transfer encoding"},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"},
		{"bad status", "HTTP/1.0 2OO OK\r\n\r\n", "malformed status line"},
		{"length too long", "HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n{}", "Content-Length"},
		{"body too long", "HTTP/1.0 200 OK\r\n\r\n" + strings.Repeat(" ", maxAnswer+1), "longer than"},
		{"cut short", "HTTP/1.0 200 OK\r\nContent-", "read answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "agent.sock")
			l, err := net.Listen("unix", socket)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				// The whole request first: the client writes it
				// before it reads.
				buf := make([]byte, 4096)
				n, _ := conn.Read(buf)
				if !strings.HasPrefix(string(buf[:n]), "POST /v1/del HTTP/1.0\r\n") {
					return
				}
				io.WriteString(conn, tc.answer)
			}()
			err = NewClient(socket, 2*time.Second).Del(context.Background(), &Request{ContainerID: "c"})
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err = %v, want one saying %q", err, tc.err)
			}
		})
	}
}
