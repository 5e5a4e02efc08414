package meshctl

import (
	"crypto"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/manifest"
)

func manifestProposeCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	var unrevoke []string
	cmd := &cobra.Command{
		Use:   "propose MANIFEST",
		Short: "propose a manifest update that several owners must sign (updateThreshold)",
		Long: `Signs MANIFEST as the successor of the current head and leaves it, with your signature,
as a proposal in the store. Other owners approve it (meshctl manifest approve ID); once as
many owners as the current manifest's updateThreshold have signed, the coordinator applies
it. A changed manifest is another proposal: approvals sign the exact manifest and parent.`,
		Example: `  meshctl manifest propose manifest.yaml --owner-key alice.key
  meshctl manifest approve 3f2a… --owner-key bob.key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			resp, err := sign(cmd, c, key, m, st.Head, unrevoke)
			if err != nil {
				return err
			}
			return printProposal(cmd.OutOrStdout(), resp)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().StringSliceVar(&unrevoke, "unrevoke", nil, "lift the revocation of this certificate fingerprint (repeatable), as manifest set --unrevoke")
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

func manifestApproveCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "approve ID",
		Short: "sign a proposed manifest update (meshctl manifest propose)",
		Long: `Fetches proposal ID, shows what it changes against the current manifest, and signs it
with your owner key. The coordinator applies it once enough owners signed.`,
		Example: `  meshctl manifest approve 3f2a… --owner-key bob.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			p, err := c.Proposal(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			m, err := manifest.ParseJSON(p.Manifest)
			if err != nil {
				return fmt.Errorf("proposal %s: %w", args[0], err)
			}
			if history.UpdateDigestHex(p.Parent, m.Hash()) != args[0] {
				return fmt.Errorf("the coordinator sent a proposal whose content is not %s", args[0])
			}
			cur, _, err := currentManifest(cmd.Context(), c)
			if err != nil {
				return err
			}
			changes, err := Changes(cur.Canonical(), m.Canonical())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "proposal %s changes:\n  %s\n", args[0], strings.Join(changes, "\n  "))
			resp, err := sign(cmd, c, key, m, p.Parent, nil)
			if err != nil {
				return err
			}
			return printProposal(cmd.OutOrStdout(), resp)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

// sign signs the update from parent to m and sends it as a proposal.
func sign(cmd *cobra.Command, c *api.Client, key crypto.Signer, m *manifest.Manifest, parent string, unrevoke []string) (*api.ProposalResponse, error) {
	u, err := history.SignWith(parent, m, key)
	if err != nil {
		return nil, err
	}
	return c.Propose(cmd.Context(), &api.ProposalRequest{Manifest: m.Canonical(), Parent: parent, SignerKey: u.SignerKey, Signature: u.Signature, Unrevoke: unrevoke})
}

func printProposal(w io.Writer, p *api.ProposalResponse) error {
	if p.Applied != nil {
		_, err := fmt.Fprintf(w, "proposal %s applied, signed by %s: manifest generation %d (head %s)\n",
			p.ID, strings.Join(p.ApprovedBy, ", "), p.Applied.Status.Generation, p.Applied.Status.Head)
		return err
	}
	_, err := fmt.Fprintf(w, "proposal %s signed by %s; %d more owner signature(s) needed: meshctl manifest approve %s --owner-key OWNER-KEY\n",
		p.ID, strings.Join(p.ApprovedBy, ", "), p.Needed, p.ID)
	return err
}

// readManifest reads and checks a manifest file (JSON or YAML).
func readManifest(path string) (*manifest.Manifest, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return manifest.Parse(raw)
}
