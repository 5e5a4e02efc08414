package api

import (
	"errors"
	"net/http"
)

// Code says, for machines, why a coordinator refused a request. Clients
// branch on it, never on the message, which is for people and may change.
type Code string

// The codes a coordinator answers with. A Fault with a parent is a finer
// kind of it: errors.Is(ErrNonce, ErrRefused) holds.
const (
	CodeBadRequest  Code = "bad-request"
	CodeRefused     Code = "refused"
	CodeNonce       Code = "nonce-refused"
	CodeConflict    Code = "conflict"
	CodeStaleParent Code = "stale-parent"
	// CodeRevocationDropped: an update drops revocations it does not name
	// in ManifestRequest.Unrevoke.
	CodeRevocationDropped Code = "revocation-dropped"
	CodeNotReady          Code = "not-ready"
	// CodeHeadMismatch: the request expects another head (HeaderExpectedHead).
	CodeHeadMismatch Code = "head-mismatch"
	CodeRateLimited  Code = "rate-limited"
	CodeInternal     Code = "internal"
)

// Fault is one kind of failure: its code on the wire and its HTTP status.
type Fault struct {
	Code   Code
	Status int
	// Msg starts the message of an error wrapping it.
	Msg    string
	parent *Fault
}

func (f *Fault) Error() string { return f.Msg }

// Is makes a finer fault match its parents.
func (f *Fault) Is(target error) bool {
	for p := f.parent; p != nil; p = p.parent {
		if p == target {
			return true
		}
	}
	return false
}

// The faults, for servers to wrap (fmt.Errorf("%w: ...", api.ErrRefused)) and
// clients to test for (errors.Is(err, api.ErrRefused) holds for a
// StatusError that carries the code).
var (
	ErrBadInput = &Fault{Code: CodeBadRequest, Status: http.StatusBadRequest, Msg: "bad request"}
	ErrRefused  = &Fault{Code: CodeRefused, Status: http.StatusForbidden, Msg: "refused"}
	// ErrNonce: the nonce is unknown (the coordinator restarted), used or
	// expired; a fresh one may succeed, unlike a refusal of the evidence.
	ErrNonce    = &Fault{Code: CodeNonce, Status: http.StatusForbidden, Msg: "refused", parent: ErrRefused}
	ErrConflict = &Fault{Code: CodeConflict, Status: http.StatusConflict, Msg: "conflict"}
	// ErrStaleParent: an update names a head that is no longer the latest.
	ErrStaleParent = &Fault{Code: CodeStaleParent, Status: http.StatusConflict, Msg: "conflict", parent: ErrConflict}
	// ErrRevocationDropped: an update would lift revocations it does not
	// name (ManifestRequest.Unrevoke).
	ErrRevocationDropped = &Fault{Code: CodeRevocationDropped, Status: http.StatusConflict, Msg: "conflict", parent: ErrConflict}
	ErrNotReady          = &Fault{Code: CodeNotReady, Status: http.StatusServiceUnavailable, Msg: "coordinator is not ready"}
	// ErrHeadMismatch: the coordinator is not at the head the request
	// expects (HeaderExpectedHead); it did nothing.
	ErrHeadMismatch = &Fault{Code: CodeHeadMismatch, Status: http.StatusPreconditionFailed, Msg: "precondition failed"}
	ErrRateLimited  = &Fault{Code: CodeRateLimited, Status: http.StatusTooManyRequests, Msg: "rate limited"}
	ErrInternal     = &Fault{Code: CodeInternal, Status: http.StatusInternalServerError, Msg: "internal error"}
)

var allFaults = []*Fault{ErrBadInput, ErrRefused, ErrNonce, ErrConflict, ErrStaleParent, ErrRevocationDropped, ErrNotReady, ErrHeadMismatch, ErrRateLimited, ErrInternal}

var faults = map[Code]*Fault{}

func init() {
	for _, f := range allFaults {
		faults[f.Code] = f
	}
}

// Codes are every code a coordinator answers with.
func Codes() []Code {
	out := make([]Code, len(allFaults))
	for i, f := range allFaults {
		out[i] = f.Code
	}
	return out
}

// FaultOf is the fault err carries (the finest one wrapped), ErrInternal
// if none.
func FaultOf(err error) *Fault {
	var f *Fault
	if errors.As(err, &f) {
		return f
	}
	return ErrInternal
}

// ErrorBody is the body of a failed request for err.
func ErrorBody(err error) Error {
	return Error{Error: err.Error(), Code: FaultOf(err).Code}
}

// StatusError is a coordinator's answer other than success.
type StatusError struct {
	// Status is the HTTP status.
	Status int
	// Code is the machine-readable reason; empty from a server that sent
	// none (a proxy, a rate limiter of another make).
	Code Code
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// Is lets callers test a remote failure as they would a local one.
func (e *StatusError) Is(target error) bool {
	f, ok := faults[e.Code]
	return ok && (f == target || f.Is(target))
}
