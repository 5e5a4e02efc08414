// Package retry paces an operation that is tried again after failing:
// jittered exponential waits between attempts (k8s.io/apimachinery's
// wait.Backoff), and one log line per kind of failure with how often it
// happened, instead of the same line every few seconds for as long as a
// coordinator is down.
package retry

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// DefaultBackoff starts at a second and doubles to a minute, each wait
// up to 20% longer at random so that many clients do not retry in step.
var DefaultBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: time.Minute}

// Failures follows one repeated operation's failures.
type Failures struct {
	log     *slog.Logger
	what    string
	backoff wait.Backoff

	mu    sync.Mutex
	cur   wait.Backoff
	count int    // consecutive failures
	last  string // the last failure's text
	since time.Time
}

// New follows the operation named what (as in the log: "renewal"), logging
// to log, waiting as b says (DefaultBackoff if b is zero).
func New(log *slog.Logger, what string, b wait.Backoff) *Failures {
	if b == (wait.Backoff{}) {
		b = DefaultBackoff
	}
	return &Failures{log: log, what: what, backoff: b, cur: b}
}

// Failed records a failure and returns how long to wait before the next
// attempt. The first failure, and one whose text differs from the one
// before, is logged at warn with the count so far; a repeat only at debug.
func (f *Failures) Failed(err error, attrs ...any) time.Duration {
	f.mu.Lock()
	f.count++
	if f.count == 1 {
		f.since = time.Now()
	}
	repeat := err.Error() == f.last
	f.last = err.Error()
	count := f.count
	wait := f.cur.Step()
	f.mu.Unlock()
	attrs = append(attrs, "err", err, "failures", count, "retry", wait.Round(time.Millisecond))
	if repeat {
		f.log.Debug(f.what+": failed again", attrs...)
	} else {
		f.log.Warn(f.what+": failed; retrying", attrs...)
	}
	return wait
}

// Succeeded resets the waits; after failures it logs that the operation
// works again, and after how many.
func (f *Failures) Succeeded(attrs ...any) {
	f.mu.Lock()
	count, since := f.count, f.since
	f.count, f.last, f.cur = 0, "", f.backoff
	f.mu.Unlock()
	if count > 0 {
		f.log.Info(f.what+": works again", append(attrs, "failures", count, "for", time.Since(since).Round(time.Second))...)
	}
}

// Failing reports how many consecutive failures there have been.
func (f *Failures) Failing() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// Sleep waits d or until ctx ends, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
