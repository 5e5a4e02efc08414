// Package cni is sealmesh-cni, a chained CNI plugin: after the primary plugin has
// given the pod its cluster network, it asks the node agent to bring up the pod's
// encrypted Nebula interface and adds that interface and its overlay IP to the
// result. It writes nothing but the result to stdout; it logs to a file if asked.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/internal/buildinfo"
)

// supported lists the CNI versions this plugin speaks (made in Main: the
// plugin's packages do no work at initialisation, TestPluginInitDoesNoWork).
func supported() version.PluginInfo { return version.PluginSupports("0.4.0", "1.0.0", "1.1.0") }

// Conf is the plugin's entry in a conflist.
type Conf struct {
	types.PluginConf
	// AgentSocket is the node agent's unix socket.
	AgentSocket string `json:"agentSocket,omitempty"`
	// InterfaceName is the Nebula interface in the pod.
	InterfaceName string `json:"interfaceName,omitempty"`
	// MTU of the Nebula interface; 0 derives it from the pod's primary link.
	MTU int `json:"mtu,omitempty"`
	// TimeoutSeconds bounds each call to the agent (enrolment included).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// LogFile, when set, receives the plugin's log.
	LogFile string `json:"logFile,omitempty"`
	// ExcludeNamespaces are namespaces whose pods are passed through without
	// asking the agent: kube-system and sealmesh's own (the coordinators
	// must start while no coordinator can enrol anything).
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
}

// boundStdin reads at most max bytes of stdin, refuses more, and puts what
// it read back as stdin for skel.
func boundStdin(max int64) error {
	b, err := io.ReadAll(io.LimitReader(os.Stdin, max+1))
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if int64(len(b)) > max {
		return fmt.Errorf("more than %d bytes on stdin", max)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	go func() {
		w.Write(b) // the pipe holds 64 KiB: skel reads while this writes
		w.Close()
	}()
	os.Stdin = r
	return nil
}

func parseConf(data []byte) (*Conf, error) {
	c := &Conf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("sealmesh-cni: parse network configuration: %w", err)
	}
	if c.AgentSocket == "" {
		c.AgentSocket = cniapi.DefaultSocket
	}
	if c.InterfaceName == "" {
		c.InterfaceName = "nebula1"
	}
	if c.TimeoutSeconds == 0 {
		c.TimeoutSeconds = 60
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, fmt.Errorf("sealmesh-cni: prevResult: %w", err)
	}
	return c, nil
}

func (c *Conf) logger() (*slog.Logger, func()) {
	if c.LogFile == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil)), func() {}
	}
	f, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil)), func() {}
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }
}

func request(args *skel.CmdArgs, c *Conf) *cniapi.Request {
	r := &cniapi.Request{ContainerID: args.ContainerID, Netns: args.Netns, IfName: c.InterfaceName, AttachIfName: args.IfName, MTU: c.MTU, Network: c.Name}
	for _, kv := range strings.Split(args.Args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			r.PodNamespace = v
		case "K8S_POD_NAME":
			r.PodName = v
		case "K8S_POD_UID":
			r.PodUID = v
		}
	}
	return r
}

func (c *Conf) client() (*cniapi.Client, context.Context, context.CancelFunc) {
	t := time.Duration(c.TimeoutSeconds) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), t)
	return cniapi.NewClient(c.AgentSocket, t), ctx, cancel
}

// Add brings the pod's Nebula interface up and appends it to the previous result.
func Add(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad configuration", err.Error())
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "sealmesh-cni must be chained after a primary plugin",
			"no prevResult: put sealmesh-cni after the plugin that gives the pod its cluster network")
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad prevResult", err.Error())
	}
	log, done := c.logger()
	defer done()

	req := request(args, c)
	if cniapi.Excluded(req.PodNamespace, c.ExcludeNamespaces) {
		log.Info("ADD: passed through, not attached: its namespace is excluded", "container", args.ContainerID, "pod", req.PodNamespace+"/"+req.PodName)
		return types.PrintResult(prev, c.CNIVersion)
	}
	cl, ctx, cancel := c.client()
	defer cancel()
	res, err := cl.Add(ctx, req)
	if err != nil {
		log.Error("ADD", "container", args.ContainerID, "err", err)
		code := uint(types.ErrInternal)
		if errors.Is(err, cniapi.ErrAgentUnreachable) {
			code = types.ErrTryAgainLater // fail closed, but let the runtime retry
		}
		return types.NewError(code, "sealmesh: pod not attached", err.Error())
	}
	if res.Skipped != "" {
		log.Info("ADD: passed through, not attached: "+res.Skipped, "container", args.ContainerID, "pod", req.PodNamespace+"/"+req.PodName)
		return types.PrintResult(prev, c.CNIVersion)
	}
	addrs := res.Addresses
	if len(addrs) == 0 {
		addrs = []string{res.Address} // an agent from before dual stack
	}
	prev.Interfaces = append(prev.Interfaces, &current.Interface{Name: res.Interface, Sandbox: args.Netns})
	idx := len(prev.Interfaces) - 1
	for _, a := range addrs {
		ip, ipnet, err := net.ParseCIDR(a)
		if err != nil {
			return types.NewError(types.ErrInternal, "agent returned a bad address", a)
		}
		ipnet.IP = ip
		prev.IPs = append(prev.IPs, &current.IPConfig{Address: *ipnet, Interface: &idx})
	}
	log.Info("ADD", "container", args.ContainerID, "interface", res.Interface, "address", res.Address)
	return types.PrintResult(prev, c.CNIVersion)
}

// Del tears the attachment down. It succeeds when there is nothing to tear down,
// including when the agent is gone: a runtime must always be able to delete.
func Del(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad configuration", err.Error())
	}
	log, done := c.logger()
	defer done()
	cl, ctx, cancel := c.client()
	defer cancel()
	err = cl.Del(ctx, request(args, c))
	switch {
	case errors.Is(err, cniapi.ErrAgentUnreachable):
		log.Warn("DEL: agent not running; nothing to tear down here", "container", args.ContainerID)
		return nil
	case err != nil:
		log.Error("DEL", "container", args.ContainerID, "err", err)
		return types.NewError(types.ErrInternal, "sealmesh: detach failed", err.Error())
	}
	log.Info("DEL", "container", args.ContainerID)
	return nil
}

// Check verifies the attachment is as ADD left it.
func Check(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad configuration", err.Error())
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult", "")
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad prevResult", err.Error())
	}
	found := false
	for _, i := range prev.Interfaces {
		found = found || (i.Name == c.InterfaceName && i.Sandbox == args.Netns)
	}
	if !found {
		// The runtime keeps only results of ADDs that succeeded: without
		// the interface, ADD passed the pod through (excluded, opted out).
		return nil
	}
	cl, ctx, cancel := c.client()
	defer cancel()
	if err := cl.Check(ctx, request(args, c)); err != nil {
		return types.NewError(types.ErrInternal, "sealmesh: check failed", err.Error())
	}
	return nil
}

// Status (CNI 1.1) reports whether the agent serves ADD: it runs and has
// taken up its pods. Not ready is error 50 (the runtime then starts no pod
// on the node). Coordinators that are not ready fail each ADD instead: the
// coordinators' own pods must start for them to become ready.
func Status(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad configuration", err.Error())
	}
	cl, ctx, cancel := c.client()
	defer cancel()
	st, err := cl.Status(ctx)
	switch {
	case err != nil:
		return types.NewError(types.ErrPluginNotAvailable, "sealmesh agent not available", err.Error())
	case !st.Ready:
		return types.NewError(types.ErrPluginNotAvailable, "sealmesh agent cannot enrol pods", st.Reason)
	}
	return nil
}

// GC (CNI 1.1) removes the attachments the runtime no longer lists. With the
// agent gone there is nothing running to remove.
func GC(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "bad configuration", err.Error())
	}
	log, done := c.logger()
	defer done()
	valid := make([]cniapi.Attachment, 0, len(c.ValidAttachments))
	for _, a := range c.ValidAttachments {
		valid = append(valid, cniapi.Attachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	cl, ctx, cancel := c.client()
	defer cancel()
	err = cl.GC(ctx, c.Name, valid)
	switch {
	case errors.Is(err, cniapi.ErrAgentUnreachable):
		log.Warn("GC: agent not running; nothing to collect here")
		return nil
	case err != nil:
		log.Error("GC", "err", err)
		return types.NewError(types.ErrInternal, "sealmesh: garbage collection failed", err.Error())
	}
	log.Info("GC", "valid", len(valid))
	return nil
}

// MaxConfig bounds the network configuration read on stdin. skel reads
// stdin whole: 200 MB sent to the plugin took 420 MB of memory (finding 15
// of the attack review); a conflist entry with its prevResult is a few KiB.
const MaxConfig = 1 << 20

// Main is the plugin's entry point.
func Main(version string) {
	// Run by hand (no CNI_COMMAND): --version and version report the build,
	// as every sealmesh binary does; the runtime's VERSION command is CNI's.
	if os.Getenv("CNI_COMMAND") == "" && len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		in := buildinfo.Get(version)
		fmt.Printf("sealmesh-cni version %s\n  go:     %s\n", in.Version, in.Go)
		return
	}
	if err := boundStdin(MaxConfig); err != nil {
		types.NewError(types.ErrDecodingFailure, "network configuration refused", err.Error()).Print()
		os.Exit(1)
	}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: Add, Del: Del, Check: Check, GC: GC, Status: Status}, supported(), "sealmesh-cni: attested Nebula interface for pods")
}
