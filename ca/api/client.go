package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one coordinator.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client for the coordinator at base, e.g. http://10.0.0.1:7080.
// rt, when not nil, makes its connections (attested TLS: package attested).
func NewClient(base string, rt ...http.RoundTripper) *Client {
	c := &http.Client{Timeout: 30 * time.Second}
	if len(rt) > 0 && rt[0] != nil {
		c.Transport = rt[0]
	}
	return &Client{base: strings.TrimRight(base, "/"), http: c}
}

// SetManifest sets or replaces the manifest.
func (c *Client) SetManifest(ctx context.Context, req *ManifestRequest) (*ManifestResponse, error) {
	var r ManifestResponse
	return &r, c.post(ctx, "/v1/manifest", req, &r)
}

// Manifest returns the current manifest (503 before the first).
func (c *Client) Manifest(ctx context.Context) (*ManifestInfo, error) {
	var m ManifestInfo
	return &m, c.do(ctx, http.MethodGet, "/v1/manifest", nil, &m)
}

// History returns every transition, oldest first.
func (c *Client) History(ctx context.Context) ([]HistoryEntry, error) {
	var h []HistoryEntry
	return h, c.do(ctx, http.MethodGet, "/v1/history", nil, &h)
}

// Unlock hands a locked coordinator its unlock key.
func (c *Client) Unlock(ctx context.Context, key string) (*Status, error) {
	var s Status
	return &s, c.post(ctx, "/v1/unlock", &UnlockRequest{UnlockKey: key}, &s)
}

// RotateUnlockKey replaces the unlock key; the current one authorises it.
func (c *Client) RotateUnlockKey(ctx context.Context, current string) (string, error) {
	var r UnlockKeyResponse
	err := c.post(ctx, "/v1/unlock-key", &UnlockRequest{UnlockKey: current}, &r)
	return r.UnlockKey, err
}

// PeerKeys asks a ready coordinator for the seed (coordinator to coordinator).
func (c *Client) PeerKeys(ctx context.Context, req *PeerKeysRequest) (*PeerKeysResponse, error) {
	var r PeerKeysResponse
	return &r, c.post(ctx, "/v1/peer/keys", req, &r)
}

// RecoveryKey returns the key to encrypt a seed to.
func (c *Client) RecoveryKey(ctx context.Context) ([]byte, error) {
	var r RecoveryKey
	err := c.do(ctx, http.MethodGet, "/v1/recovery-key", nil, &r)
	return r.PublicKey, err
}

// Recover hands a coordinator without secrets the encrypted seed.
func (c *Client) Recover(ctx context.Context, req *RecoverRequest) (*ManifestResponse, error) {
	var r ManifestResponse
	return &r, c.post(ctx, "/v1/recover", req, &r)
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, b, out)
}

// Nonce asks for a fresh single-use nonce.
func (c *Client) Nonce(ctx context.Context) (*NonceResponse, error) {
	var n NonceResponse
	return &n, c.do(ctx, http.MethodPost, "/v1/nonce", nil, &n)
}

// Enrol asks for a certificate.
func (c *Client) Enrol(ctx context.Context, req *EnrolRequest) (*EnrolResponse, error) {
	var r EnrolResponse
	return &r, c.post(ctx, "/v1/enrol", req, &r)
}

// Release gives an IP back.
func (c *Client) Release(ctx context.Context, req *ReleaseRequest) error {
	return c.post(ctx, "/v1/release", req, nil)
}

// Status returns the coordinator's view of the mesh.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("coordinator %s%s: read: %w", c.base, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("coordinator %s%s: %s", c.base, path, e.Error)
		}
		return fmt.Errorf("coordinator %s%s: %s", c.base, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("coordinator %s%s: bad response: %w", c.base, path, err)
	}
	return nil
}
