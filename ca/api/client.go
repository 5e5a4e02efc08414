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
func NewClient(base string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 30 * time.Second}}
}

// SetManifest sends the first manifest; body is JSON or YAML.
func (c *Client) SetManifest(ctx context.Context, body []byte) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodPost, "/v1/manifest", body, &s)
}

// Nonce asks for a fresh single-use nonce.
func (c *Client) Nonce(ctx context.Context) (*NonceResponse, error) {
	var n NonceResponse
	return &n, c.do(ctx, http.MethodPost, "/v1/nonce", nil, &n)
}

// Enrol asks for a certificate.
func (c *Client) Enrol(ctx context.Context, req *EnrolRequest) (*EnrolResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var r EnrolResponse
	return &r, c.do(ctx, http.MethodPost, "/v1/enrol", b, &r)
}

// Release gives an IP back.
func (c *Client) Release(ctx context.Context, req *ReleaseRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v1/release", b, nil)
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
