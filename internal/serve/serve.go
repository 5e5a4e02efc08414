// Package serve gives every sealmesh HTTP server the same defences: read,
// write and idle timeouts, and a cap on open connections, in total and from
// one source. Without them, 20 slow-body connections stayed on a coordinator
// for 75 s and 2,000 idle ones for 130 s, until its fd table was full and its
// own store reads failed.
package serve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// Options are a server's timeouts and connection caps.
type Options struct {
	// Header bounds reading a request's headers (and the TLS handshake);
	// Read the whole request; Write from the end of the headers to the end
	// of the answer; Idle how long a kept-alive connection waits for its
	// next request.
	Header, Read, Write, Idle time.Duration
	// Total bounds open connections; PerSource those from one IP address
	// (0: unbounded). A connection past either is closed on accept.
	Total, PerSource int
}

var (
	// API is for the coordinator's API: small JSON requests; an answer may
	// wait for evidence verification and a store write, and clients give
	// up after 30 s.
	API = Options{Header: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 60 * time.Second,
		Total: 8192, PerSource: 512}
	// Health is for /healthz, /readyz and /metrics: probes and scrapers.
	Health = Options{Header: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 60 * time.Second,
		Total: 64, PerSource: 16}
	// Local is for unix sockets of this node (the agent's CNI socket, the
	// tunnel hosts' control sockets): one caller, but a CNI ADD may take
	// as long as an enrolment and a tunnel start, up to the plugin's own
	// timeout.
	Local = Options{Header: 10 * time.Second, Read: 30 * time.Second, Write: 10 * time.Minute, Idle: 60 * time.Second,
		Total: 256}
)

// Server returns a server for h with o's timeouts.
func Server(h http.Handler, o Options) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: o.Header, ReadTimeout: o.Read, WriteTimeout: o.Write, IdleTimeout: o.Idle,
		MaxHeaderBytes: 64 << 10}
}

// Listen listens on network and addr with o's connection caps.
func Listen(network, addr string, o Options) (net.Listener, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return Limit(l, o), nil
}

// Limit caps the connections l hands out. Total is also kept below half the
// process's fd limit, so a flood can never starve the process's own files
// and store connections.
func Limit(l net.Listener, o Options) net.Listener {
	total := o.Total
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur > 0 && r.Cur/2 < uint64(max(total, 0)) {
		total = int(r.Cur / 2)
	}
	return &limited{Listener: l, total: total, perSource: o.PerSource, open: map[string]int{}}
}

type limited struct {
	net.Listener
	total, perSource int

	mu     sync.Mutex
	count  int
	open   map[string]int
	warned time.Time // when a refusal was last logged
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if ok, warn := l.take(src); !ok {
			c.Close()
			if warn {
				// Once a minute at most: a flood should not also
				// flood the log.
				slog.Warn("connection refused: too many open", "listener", l.Addr().String(), "source", src,
					"total", l.total, "per_source", l.perSource)
			}
			continue
		}
		return &conn{Conn: c, done: sync.OnceFunc(func() { l.give(src) })}, nil
	}
}

// take counts a connection from src in, or says it is past a cap and
// whether to log that.
func (l *limited) take(src string) (ok, warn bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.total > 0 && l.count >= l.total) || (l.perSource > 0 && l.open[src] >= l.perSource) {
		if now := time.Now(); now.Sub(l.warned) >= time.Minute {
			l.warned = now
			return false, true
		}
		return false, false
	}
	l.count++
	l.open[src]++
	return true, false
}

func (l *limited) give(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count--
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// source is a connection's peer IP address; every unix-socket peer is one.
func source(a net.Addr) string {
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

type conn struct {
	net.Conn
	done func()
}

func (c *conn) Close() error {
	c.done()
	return c.Conn.Close()
}

// Run serves srv on l until ctx is done, then shuts it down, giving requests
// in flight up to five seconds.
func Run(ctx context.Context, srv *http.Server, l net.Listener) error {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	var err error
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}
