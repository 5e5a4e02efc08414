// Package cniapi is the protocol between the CNI plugin and the node agent: JSON
// over HTTP on a unix socket. It is deliberately small: the plugin binary links it
// and must stay free of the attestation libraries, client-go and memberlist, and
// of net/http (the client speaks HTTP/1.0 itself; the agent serves it with
// net/http).
package cniapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
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

// The checks below are loops over bytes rather than regular expressions:
// sealmesh-cni links this package, and a pattern is compiled when its
// package initialises, at every exec of the plugin, whether or not the
// plugin validates anything (five patterns were 234 allocations and about a
// third of a millisecond of each exec; issue 29).

// validID: a container ID, as runtimes make them (1 to 255 letters, digits,
// '_', '.', '-', the first a letter or digit).
func validID(s string) bool {
	return len(s) >= 1 && len(s) <= 255 && alnum(s[0]) && all(s, nameByte)
}

// validIf: an interface name the kernel takes (1 to 15 letters, digits,
// '_', '.', '-'; not "." or "..").
func validIf(s string) bool {
	return len(s) >= 1 && len(s) <= 15 && s != "." && s != ".." && all(s, nameByte)
}

// dnsLabel: an RFC 1123 label as Kubernetes takes it for a namespace (at
// most 63 lower-case letters, digits and '-', starting and ending with a
// letter or digit).
func dnsLabel(s string) bool { return len(s) <= 63 && label(s) }

// dnsSubdomain: an RFC 1123 subdomain as Kubernetes takes it for a pod name
// (at most 253 characters, labels joined by '.').
func dnsSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !label(l) {
			return false
		}
	}
	return true
}

// label: one or more lower-case letters, digits and '-', starting and
// ending with a letter or digit (no length limit: the callers have theirs).
func label(s string) bool {
	return len(s) >= 1 && lowerAlnum(s[0]) && lowerAlnum(s[len(s)-1]) &&
		all(s, func(c byte) bool { return lowerAlnum(c) || c == '-' })
}

// podUID: a Kubernetes UID (1 to 64 hex digits and '-').
func podUID(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && all(s, func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-'
	})
}

func alnum(c byte) bool      { return lowerAlnum(c) || c >= 'A' && c <= 'Z' }
func lowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// nameByte: a byte of a container ID or an interface name.
func nameByte(c byte) bool { return alnum(c) || c == '_' || c == '.' || c == '-' }

// all reports whether every byte of s is ok.
func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

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
	if r.PodNamespace != "" && !dnsLabel(r.PodNamespace) {
		return fmt.Errorf("podNamespace %q: want a DNS label (RFC 1123, at most 63 characters)", r.PodNamespace)
	}
	if r.PodName != "" && !dnsSubdomain(r.PodName) {
		return fmt.Errorf("podName %q: want a DNS subdomain (RFC 1123, at most 253 characters)", r.PodName)
	}
	if r.PodUID != "" && !podUID(r.PodUID) {
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
//
// It speaks HTTP/1.0 itself, one request per connection, instead of
// through net/http: the plugin is exec'd twice per pod, and net/http links
// crypto/tls, HTTP/2 and their dependencies, whose package initialisation
// cost every exec about 2 ms before main (issue 29). HTTP/1.0 keeps the
// answer simple to read: the agent's server closes the connection after
// it and sends no chunked encoding, so the body is what comes before EOF.
type Client struct {
	socket  string
	timeout time.Duration
}

// NewClient returns a client for the agent at socket; each call is given
// at most timeout.
func NewClient(socket string, timeout time.Duration) *Client {
	return &Client{socket: socket, timeout: timeout}
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

// maxAnswer bounds what a call reads back.
const maxAnswer = 1 << 20

func (c *Client) call(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (socket %s): %v", ErrAgentUnreachable, c.socket, err)
		}
		return fmt.Errorf("sealmesh agent %s: %w", c.socket, err)
	}
	defer conn.Close()
	// The context's end ends the call, wherever it is.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	status, body, err := exchange(conn, path, b)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("sealmesh agent %s: %s: %w", c.socket, path, err)
	}
	if status != 200 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("sealmesh agent %s: HTTP status %d", path, status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// exchange writes one HTTP/1.0 POST of body to path on conn and reads the
// answer's status code and body.
func exchange(conn net.Conn, path string, body []byte) (int, []byte, error) {
	req := fmt.Sprintf("POST %s HTTP/1.0\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return 0, nil, err
	}
	r := textproto.NewReader(bufio.NewReader(conn))
	line, err := r.ReadLine()
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	// "HTTP/1.x 200 OK"
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || len(code) != 3 {
		return 0, nil, fmt.Errorf("malformed status line %q", line)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	if te := h.Get("Transfer-Encoding"); te != "" && te != "identity" {
		return 0, nil, fmt.Errorf("answer has transfer encoding %q; an HTTP/1.0 request wants none", te)
	}
	var src io.Reader = r.R
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || n > maxAnswer {
			return 0, nil, fmt.Errorf("answer's Content-Length %q", cl)
		}
		src = io.LimitReader(src, n)
	}
	b, err := io.ReadAll(io.LimitReader(src, maxAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > maxAnswer {
		return 0, nil, fmt.Errorf("answer longer than %d bytes", maxAnswer)
	}
	return status, b, nil
}
