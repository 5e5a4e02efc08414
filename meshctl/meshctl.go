// Package meshctl is the command tree of the meshctl CLI.
package meshctl

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/api/attested"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/cli"
)

// Version is meshctl's version (cmd/meshctl sets it from -ldflags).
var Version = "dev"

// Command returns meshctl's root command.
func Command() *cobra.Command {
	var coordinator, policy, meshID, pinFile string
	root := cli.Group(&cobra.Command{Use: "meshctl", Short: "operate and verify a sealmesh mesh", SilenceUsage: true, SilenceErrors: true})
	def := os.Getenv("SEALMESH_COORDINATOR")
	if def == "" {
		def = "https://127.0.0.1:7080"
	}
	root.PersistentFlags().StringVar(&coordinator, "coordinator", def, "coordinator URL, https (attested TLS) or http (development) (or $SEALMESH_COORDINATOR)")
	root.PersistentFlags().StringVar(&policy, "coordinator-policy-file", os.Getenv("SEALMESH_COORDINATOR_POLICY"), "what the coordinator must attest as: a file holding a JSON or YAML attestation block (meshctl sim-tee init --policy-out writes one) (or $SEALMESH_COORDINATOR_POLICY)")
	cli.Rename(root.PersistentFlags(), "coordinator-policy", "coordinator-policy-file")
	root.PersistentFlags().StringVar(&meshID, "mesh-id", os.Getenv("SEALMESH_MESH_ID"), "the mesh to talk to (meshctl manifest set prints it at creation): a coordinator of another mesh is refused before anything is sent (or $SEALMESH_MESH_ID)")
	root.PersistentFlags().StringVar(&pinFile, "pin-file", "", "a pin file meshctl verify wrote: talk only to its mesh, and only while the coordinator is at its head (any change answers 412: verify again)")
	// Built on first use, after the flags are parsed, and only by the
	// commands that talk to a coordinator (keygen needs no policy).
	cli.Rename(root.PersistentFlags(), "pin", "pin-file")
	var cached *api.Client
	client := func() (*api.Client, error) {
		if cached == nil {
			c, _, err := attested.Client(coordinator, policy)
			if err != nil {
				return nil, err
			}
			if pinFile != "" {
				pin, err := readPin(pinFile)
				if err != nil {
					return nil, err
				}
				if meshID != "" && meshID != pin.MeshID {
					return nil, fmt.Errorf("--mesh-id %s and --pin-file %s (mesh %s) disagree", meshID, pinFile, pin.MeshID)
				}
				meshID = pin.MeshID
				c = c.ExpectingHead(pin.Head)
			}
			if meshID != "" {
				c = c.ExpectingMesh(meshID)
			}
			cached = c
		}
		return cached, nil
	}
	root.AddCommand(statusCmd(client), manifestCmd(client), keygenCmd(), unlockCmd(client), rotateCmd(client), recoverCmd(client), seedSharesCmd(client), revokeCmd(client), tokenCmd(client), hostCmd(client), verifyCmd(client, &meshID), confirmCmd(client), simTEECmd())
	cli.AddVersion(root, Version)
	return root
}

// The exit codes of meshctl status (and verify's, ExitAttestation..., for
// scripts); any other failure exits 1.
const (
	ExitNotReady = 7 // the coordinator answered, in a state other than ready (with --wait: still so at --timeout)
	ExitNoMatch  = 8 // --host matched no live host
)

func statusCmd(client func() (*api.Client, error)) *cobra.Command {
	var host, keyFile string
	var output cli.Output
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show the coordinator's state and the enrolled hosts",
		Long: `Shows the coordinator's state and version, the manifest it serves, the cluster's members
and how many hosts are enrolled. The hosts themselves (names, overlay IPs, fingerprints,
pods) are listed only to an owner: give --owner-key.

Exit codes: 0 ready; 7 the coordinator is not ready (starting, waiting-for-manifest,
locked, recovering, unconfirmed, degraded or failed; with --wait, still not ready at
--timeout); 8 --host matched no live host; 1 anything else (it could not be asked).`,
		Example: `  meshctl status
  meshctl status --wait --timeout 2m
  meshctl status --owner-key owner.key --host default/pod-a -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if host != "" && keyFile == "" {
				return errors.New("--host needs --owner-key: the host list is for owners")
			}
			if cmd.Flags().Changed("timeout") && !wait {
				return errors.New("--timeout needs --wait")
			}
			c, err := client()
			if err != nil {
				return err
			}
			var key crypto.Signer
			if keyFile != "" {
				if key, err = owner.LoadOwnerSigner(keyFile); err != nil {
					return err
				}
			}
			ask := func(ctx context.Context) (*api.Status, error) {
				ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				if key == nil {
					return c.Status(ctx)
				}
				proof, err := api.ProveOwnerWith(key, api.PurposeHosts, time.Now())
				if err != nil {
					return nil, err
				}
				return c.Hosts(ctx, proof, host)
			}
			s, err := ask(cmd.Context())
			if wait {
				s, err = waitReady(cmd.Context(), cmd.ErrOrStderr(), timeout, ask, s, err)
			}
			if err != nil {
				return err
			}
			if err := output.Print(cmd.OutOrStdout(), s, func(w io.Writer) error {
				PrintStatus(w, s, time.Now())
				return nil
			}); err != nil {
				return err
			}
			switch {
			case s.State != api.StateReady:
				return fail(ExitNotReady, "coordinator is %s, not ready", s.State)
			case host != "" && len(s.Hosts) == 0:
				return fail(ExitNoMatch, "--host %q matches no live host (a pod as namespace/name, a certificate name, an overlay IP or a fingerprint)", host)
			}
			return nil
		},
	}
	cli.AddOutput(cmd, &output)
	cmd.Flags().StringVar(&host, "host", "", "list only this host: a pod (namespace/name), certificate name, overlay IP or fingerprint (needs --owner-key)")
	ownerKeyFlag(cmd, &keyFile, "owner key, to list the hosts: a file meshctl keygen wrote, or ssh-agent:[COMMENT-OR-FINGERPRINT]")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the coordinator is ready (or --timeout passes), asking every second")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "with --wait: how long to wait")
	return cmd
}

// waitReady asks until the coordinator answers ready or timeout passes,
// starting from the first answer (s, err). An unreachable coordinator is
// waited for too: --wait is how a script waits for one to come up. The last
// answer is returned; without one, the last error.
func waitReady(ctx context.Context, progress io.Writer, timeout time.Duration, ask func(context.Context) (*api.Status, error), s *api.Status, err error) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var good *api.Status
	if err == nil {
		good = s
	}
	last := ""
	for err != nil || s.State != api.StateReady {
		now := "unreachable"
		if err == nil {
			now = s.State
		}
		if now != last { // one line per change, not one per second
			fmt.Fprintf(progress, "waiting for the coordinator to be ready: %s\n", now)
			last = now
		}
		select {
		case <-ctx.Done():
			if good != nil {
				return good, nil // not ready: the caller's exit code says so
			}
			return nil, err
		case <-time.After(time.Second):
		}
		s2, err2 := ask(ctx)
		switch {
		case err2 == nil:
			s, err, good = s2, nil, s2
		case ctx.Err() == nil: // not the deadline's own failure: worth reporting
			s, err = nil, err2
		}
	}
	return s, nil
}

// PrintStatus writes s as a person reads it.
func PrintStatus(w io.Writer, s *api.Status, now time.Time) {
	fmt.Fprintf(w, "coordinator: %s\n", s.State)
	if s.Message != "" {
		fmt.Fprintf(w, "  %s\n", s.Message)
	}
	if s.ManifestHash != "" {
		fmt.Fprintf(w, "manifest:    %s (generation %d, head %s)\n", s.ManifestHash, s.Generation, s.Head)
	}
	if s.FreshnessUnconfirmed {
		fmt.Fprintf(w, "freshness:   UNCONFIRMED since a restart (no attested peer or owner has confirmed this head is the newest: meshctl confirm)\n")
	}
	if s.Version != "" {
		fmt.Fprintf(w, "version:     %s\n", s.Version)
	}
	if s.MeshID != "" {
		tofu := ""
		if s.MeshFirstUse {
			tofu = " (trusted on first use by this coordinator: start it with --mesh-id to pin it)"
		}
		fmt.Fprintf(w, "mesh:        %s%s\n", s.MeshID, tofu)
	}
	if s.CAFingerprint != "" {
		fmt.Fprintf(w, "nebula CA:   %s\n", s.CAFingerprint)
	}
	if s.AcceptsSimulated {
		fmt.Fprintln(w, "WARNING:     this mesh accepts SIMULATED attestation (development only; proves nothing about hardware)")
	}
	if len(s.Members) > 0 {
		// Gossip's view: what each member announces, not verified here.
		fmt.Fprintf(w, "members:     %d (as announced in gossip)\n", len(s.Members))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tAPI\tSTATE\tVERSION\tGENERATION\tHEAD\tHEALTH")
		for _, m := range s.Members {
			name, head := m.Name, m.Head
			if m.Self {
				name += " (this)"
			}
			if len(head) > 12 {
				head = head[:12]
			}
			ver := m.Version
			if ver == "" {
				ver = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\n", name, m.API, m.State, ver, m.Generation, head, m.Health)
		}
		tw.Flush()
	}
	switch {
	case s.HostsWithheld:
		fmt.Fprintf(w, "hosts:       %d (listed to owners: meshctl status --owner-key OWNER-KEY)\n\n", s.HostCount)
	case s.HostCount > len(s.Hosts):
		fmt.Fprintf(w, "hosts:       %d (the first %d listed; meshctl status --owner-key OWNER-KEY --host X shows one)\n\n", s.HostCount, len(s.Hosts))
	default:
		fmt.Fprintf(w, "hosts:       %d\n\n", len(s.Hosts))
	}
	if len(s.Hosts) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tOVERLAY IP\tGROUPS\tEXPIRES\tWORKLOAD (claimed)")
	for _, h := range s.Hosts {
		wl := h.Workload
		if wl == "" {
			wl = "-"
		}
		name := h.Name
		if h.Revoked {
			name += " (REVOKED)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (in %s)\t%s\n", name, h.Role, h.IP, strings.Join(h.Groups, ","),
			h.NotAfter.UTC().Format(time.RFC3339), h.NotAfter.Sub(now).Round(time.Minute), wl)
	}
	tw.Flush()
}

func simTEECmd() *cobra.Command {
	var dir, image, measurement, policyOut string
	tee := cli.Group(&cobra.Command{Use: "sim-tee", Short: "the simulated TEE, for development only"})
	initCmd := &cobra.Command{
		Use:     "init",
		Short:   "make a simulated SNP chip and guest in a directory; prints what a manifest must name",
		Example: `  meshctl sim-tee init --dir coordinator-tee --image sealmesh-coordinator --policy-out coordinator-policy.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := simulated.MeasurementOf(image)
			if measurement != "" {
				var err error
				if m, err = simulated.ParseMeasurement(measurement); err != nil {
					return fmt.Errorf("--measurement: %w", err)
				}
			}
			d, err := simulated.New(m)
			if err != nil {
				return err
			}
			if err := d.Save(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rootFingerprint: %s\nmeasurement: %s\n", d.RootFingerprint(), hex.EncodeToString(m[:]))
			if policyOut == "" {
				return nil
			}
			// The attestation block that accepts this device: a coordinator
			// policy (--coordinator-policy-file) or a manifest role's.
			b, err := json.MarshalIndent(map[string]any{"simulated": map[string]any{
				"measurements": []string{hex.EncodeToString(m[:])}, "rootFingerprint": d.RootFingerprint(),
			}}, "", "  ")
			if err != nil {
				return err
			}
			if err := atomicfile.WriteMode(filepath.Dir(policyOut), filepath.Base(policyOut), append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("--policy-out: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy: %s\n", policyOut)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the simulated device to (required)")
	initCmd.Flags().StringVar(&image, "image", "sealmesh-workload", "name whose SHA-384 stands in for the launch measurement")
	initCmd.Flags().StringVar(&measurement, "measurement", "", "launch measurement, 96 hex characters (overrides --image)")
	initCmd.Flags().StringVar(&policyOut, "policy-out", "", "also write the attestation block accepting this device (JSON) to this file: a --coordinator-policy-file file, or a manifest role's attestation")
	initCmd.MarkFlagRequired("dir")
	tee.AddCommand(initCmd)
	return tee
}
