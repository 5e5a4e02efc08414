// Package cniapi is the protocol between the CNI plugin and the node agent: JSON
// over HTTP on a unix socket. It is deliberately small: the plugin binary links it
// and must stay free of the attestation libraries, client-go and memberlist.
package cniapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"syscall"
	"time"
)

// DefaultSocket is where the node agent listens.
const DefaultSocket = "/run/sealmesh/agent.sock"

// Request names one pod attachment.
type Request struct {
	ContainerID string `json:"containerID"`
	Netns       string `json:"netns"`
	// IfName is the Nebula interface; AttachIfName the runtime's name of the
	// attachment (CNI_IFNAME), by which GC lists what to keep.
	IfName       string `json:"ifName"`
	AttachIfName string `json:"attachIfName,omitempty"`
	MTU          int    `json:"mtu,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
	// Network is the CNI network (the conflist's name) the attachment is
	// made in: GC for one network touches only its own attachments.
	Network string `json:"network,omitempty"`
}

// The patterns leave lengths to len(): a counted repetition ({0,254})
// compiles to that many copies, and every sealmesh-cni exec compiled it at
// start (360 KB and 1-2 ms of the plugin's start, issue 29).
var (
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]*$`)
	ifRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

func validID(s string) bool { return len(s) <= 255 && idRE.MatchString(s) }

func validIf(s string) bool { return len(s) <= 15 && ifRE.MatchString(s) && s != "." && s != ".." }

// Validate checks a request before the agent acts on it: every field
// reaches a path, netlink, a log or the Kubernetes API.
func (r *Request) Validate() error {
	if !validID(r.ContainerID) {
		return fmt.Errorf("containerID %q: want letters, digits, '_', '.', '-'", r.ContainerID)
	}
	if !validIf(r.IfName) {
		return fmt.Errorf("ifName %q: want 1 to 15 letters, digits, '_', '.', '-'", r.IfName)
	}
	if r.AttachIfName != "" && !validIf(r.AttachIfName) {
		return fmt.Errorf("attachIfName %q: want 1 to 15 letters, digits, '_', '.', '-'", r.AttachIfName)
	}
	// The MTU reaches netlink and Nebula's configuration: a TUN device
	// takes at most 65535, and an overlay with IPv6 needs IPv6's minimum.
	if r.MTU != 0 && (r.MTU < minMTU || r.MTU > maxMTU) {
		return fmt.Errorf("mtu %d: want 0 (from the pod's link) or %d to %d", r.MTU, minMTU, maxMTU)
	}
	// Pod names reach logs, metrics labels, certificates' workload field
	// and the Kubernetes API: only what Kubernetes itself allows.
	if r.PodNamespace != "" && (len(r.PodNamespace) > 63 || !dnsLabelRE.MatchString(r.PodNamespace)) {
		return fmt.Errorf("podNamespace %q: want a DNS label (RFC 1123, at most 63 characters)", r.PodNamespace)
	}
	if r.PodName != "" && (len(r.PodName) > 253 || !dnsSubdomainRE.MatchString(r.PodName)) {
		return fmt.Errorf("podName %q: want a DNS subdomain (RFC 1123, at most 253 characters)", r.PodName)
	}
	if r.PodUID != "" && (len(r.PodUID) > 64 || !uidRE.MatchString(r.PodUID)) {
		return fmt.Errorf("podUID %q: want a UID (hex digits and '-')", r.PodUID)
	}
	if len(r.Network) > 255 {
		return fmt.Errorf("network name is %d characters, want at most 255", len(r.Network))
	}
	return nil
}

const (
	minMTU = 1280
	maxMTU = 65535
)

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	uidRE          = regexp.MustCompile(`^[0-9a-fA-F-]+$`)
)

// AddResult is the Nebula interface the agent brought up.
type AddResult struct {
	Interface string `json:"interface"`
	Address   string `json:"address"` // overlay IP in the first network, with prefix length
	// Addresses are the overlay IPs in every network (Address first).
	Addresses []string `json:"addresses"`
	MTU       int      `json:"mtu"`
	// Skipped, when set, says why the pod is not attached: it opted out
	// (AttachAnnotation), shares the node's network, or its namespace is
	// excluded. The plugin then passes the previous result through.
	Skipped string `json:"skipped,omitempty"`
}

// AttachAnnotation set to "false" on a pod keeps it out of the mesh: the
// plugin passes the primary network's result through and no Nebula
// interface is made (Istio's sidecar.istio.io/inject is the model).
const AttachAnnotation = "sealmesh.io/attach"

// Excluded reports whether namespace is in the list of namespaces whose pods
// are never attached.
func Excluded(namespace string, excluded []string) bool {
	for _, n := range excluded {
		if n == namespace && n != "" {
			return true
		}
	}
	return false
}

// Status is the agent's readiness for ADD (CNI STATUS): it serves the
// socket and has taken up the pods a previous agent attached. Whether a
// coordinator is ready is not part of it: STATUS is node-wide, and a node
// whose network is "not ready" starts no pod at all, the coordinators'
// own among them.
type Status struct {
	Ready bool `json:"ready"`
	// Reason says why not.
	Reason string `json:"reason,omitempty"`
}

// Attachment names one attachment the runtime still has (CNI GC): the
// container and the runtime's interface name (CNI_IFNAME).
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// GCRequest lists the attachments to keep; the agent removes every other.
type GCRequest struct {
	// Network is the CNI network collected: cni.dev/valid-attachments
	// lists only that network's attachments.
	Network string       `json:"network,omitempty"`
	Valid   []Attachment `json:"valid"`
}

// Error is a failed call's body.
type Error struct {
	Error string `json:"error"`
}

// ErrAgentUnreachable means nothing answers on the socket.
var ErrAgentUnreachable = errors.New("sealmesh agent is not running")

// Client calls the agent.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent at socket.
func NewClient(socket string, timeout time.Duration) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// Add attaches a pod.
func (c *Client) Add(ctx context.Context, r *Request) (*AddResult, error) {
	var out AddResult
	return &out, c.call(ctx, "/v1/add", r, &out)
}

// Del detaches a pod; detaching an unknown pod succeeds.
func (c *Client) Del(ctx context.Context, r *Request) error {
	return c.call(ctx, "/v1/del", r, nil)
}

// Check verifies a pod's attachment is as Add left it.
func (c *Client) Check(ctx context.Context, r *Request) error {
	return c.call(ctx, "/v1/check", r, nil)
}

// Status asks whether the agent can serve ADD now.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	return &out, c.call(ctx, "/v1/status", struct{}{}, &out)
}

// GC removes every attachment of network not in valid.
func (c *Client) GC(ctx context.Context, network string, valid []Attachment) error {
	return c.call(ctx, "/v1/gc", &GCRequest{Network: network, Valid: valid}, nil)
}

func (c *Client) call(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (socket %s): %v", ErrAgentUnreachable, c.socket, err)
		}
		return fmt.Errorf("sealmesh agent %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("sealmesh agent %s: %s", path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
