package enrol

import (
	"context"
	"time"
)

// Trace receives how long each stage of an enrolment took, as
// net/http/httptrace's ClientTrace does for a request: "key" (making the
// key pair), "nonce" (asking a coordinator for one), "evidence" (the TEE's
// report and proof of possession), "enrol" (the coordinator's answer:
// verification, signing, the lease). A stage repeated on a retry is
// reported each time.
type Trace struct {
	Stage func(stage string, d time.Duration)
}

type traceKey struct{}

// WithTrace returns ctx carrying t; enrolments under it report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// since reports the stage that began at start to ctx's Trace, if any.
func since(ctx context.Context, stage string, start time.Time) {
	if t, _ := ctx.Value(traceKey{}).(*Trace); t != nil && t.Stage != nil {
		t.Stage(stage, time.Since(start))
	}
}
