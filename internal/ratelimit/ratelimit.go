// Package ratelimit bounds how fast one source may call a server, so that
// one client cannot take a coordinator's whole capacity.
package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sealmesh/sealmesh/api"
)

// maxSources bounds the sources tracked; past it, idle ones are forgotten
// (a forgotten source starts again with a full burst, which is the most a
// spoofed-source flood can win).
const maxSources = 65_536

// PerSource is a token bucket per source IP address.
type PerSource struct {
	every rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	sources map[string]*rate.Limiter
}

// New allows each source perSecond requests a second, in bursts of twice
// that. perSecond <= 0 means no limit.
func New(perSecond float64, now func() time.Time) *PerSource {
	return NewBurst(perSecond, max(1, int(2*perSecond)), now)
}

// NewBurst allows each source perSecond events a second, in bursts of burst.
func NewBurst(perSecond float64, burst int, now func() time.Time) *PerSource {
	if now == nil {
		now = time.Now
	}
	l := &PerSource{every: rate.Limit(perSecond), burst: max(1, burst), now: now, sources: map[string]*rate.Limiter{}}
	if perSecond <= 0 {
		l.every = rate.Inf
	}
	return l
}

// Allow reports whether source may make a request now, and if not, how long
// until it may.
func (l *PerSource) Allow(source string) (bool, time.Duration) {
	if l.every == rate.Inf {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.sources[source]
	if !ok {
		if len(l.sources) >= maxSources {
			l.forgetIdle(now)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.sources[source] = lim
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Spent reports, without taking anything, whether source has no events left
// now, and how long until it has one.
func (l *PerSource) Spent(source string) (bool, time.Duration) {
	if l.every == rate.Inf {
		return false, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.sources[source]
	if !ok || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - lim.TokensAt(now)) / float64(l.every) * float64(time.Second))
}

// forgetIdle drops sources whose bucket has refilled (they lose nothing),
// or every source if none has.
func (l *PerSource) forgetIdle(now time.Time) {
	for s, lim := range l.sources {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.sources, s)
		}
	}
	if len(l.sources) >= maxSources {
		clear(l.sources)
	}
}

// Handler answers 429 with a Retry-After header to a source over its rate,
// with an api.Error body (code rate-limited), and passes the rest to next.
func (l *PerSource) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.Allow(Source(r)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			api.WriteError(w, fmt.Errorf("%w: too many requests from %s, retry in %s", api.ErrRateLimited, Source(r), wait.Round(time.Millisecond)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Source is the request's peer IP address (never a header a client sets).
func Source(r *http.Request) string { return api.PeerAddr(r) }
