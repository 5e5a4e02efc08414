package coordinator

import (
	"context"
	"net/http"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/internal/ratelimit"
)

// Handler serves the protocol of package api (api.Routes), and the KBS
// protocol for Confidential Containers guests (package kbs) under /kbs/,
// one rate limit per source over both.
func (c *Coordinator) Handler() http.Handler {
	limit := ratelimit.New(c.cfg.RatePerSource, c.now).Handler
	mux := http.NewServeMux()
	mux.Handle("/kbs/", limit(c.kbs.Handler()))
	mux.Handle("/", api.Handler(c, limit))
	return mux
}

// The enrolment service's calls, served from the current view.

// Nonce issues a fresh single-use nonce (enrol.Service.Nonce).
func (c *Coordinator) Nonce(ctx context.Context) (*api.NonceResponse, error) {
	return c.enrol.Nonce(ctx)
}

// Enrol checks the request and issues a certificate (enrol.Service.Enrol).
func (c *Coordinator) Enrol(ctx context.Context, req *api.EnrolRequest) (*api.EnrolResponse, error) {
	return c.enrol.Enrol(ctx, req)
}

// Release ends a lease (enrol.Service.Release).
func (c *Coordinator) Release(ctx context.Context, req *api.ReleaseRequest) error {
	return c.enrol.Release(ctx, req)
}
