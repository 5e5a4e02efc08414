package meshctl

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/manifest"
)

func tokenCmd(client func() (*api.Client, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "make, list, rotate and revoke join tokens (lighthouses, and hosts of joinToken roles)",
		Long: `A join token (SMTKN-1-<mesh ID>-<secret>) admits a lighthouse, or a host of a role with
joinToken: true, without TEE evidence. The token buys the role's admission only: name, IP
and groups still come from the manifest. The manifest holds the secret's hash, so making,
rotating and revoking a token are manifest changes signed with an owner key. Hosts a
token admitted renew with their certificates, not the token: rotating, revoking or using
it up stops no running host (meshctl revoke does).`,
	}
	cli.Group(cmd).AddCommand(tokenCreateCmd(client), tokenListCmd(client), tokenRevokeCmd(client), tokenRotateCmd(client))
	return cmd
}

func tokenCreateCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile, role, name, out string
	var ttl time.Duration
	var uses int
	cmd := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "make a join token and add its hash to the manifest",
		Example: `  meshctl token create --role lighthouse --name lighthouse-1 --owner-key owner.key --out lighthouse.token
  meshctl token create --role vm --ttl 24h --uses 1 --owner-key owner.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			jt := manifest.JoinToken{Role: role, Name: name, Uses: uses}
			if ttl > 0 {
				exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
				jt.Expires = &exp
			}
			tok, gen, err := addToken(cmd.Context(), c, key, jt, "")
			if err != nil {
				return err
			}
			return emitToken(cmd, tok, out, fmt.Sprintf("token %s for role %s", jointoken.IDOf(tok.Hash()), role), gen)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().StringVar(&role, "role", "", `"lighthouse", or a role with joinToken: true (required)`)
	cmd.Flags().StringVar(&name, "name", "", "the lighthouse the token admits (required with --role lighthouse); for other roles, the host name certificates get")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long new hosts may join with it, e.g. 24h (0: until revoked)")
	cmd.Flags().IntVar(&uses, "uses", 0, "how many distinct keys may join with it (0: any number)")
	cmd.Flags().StringVar(&out, "out", "", "write the token to this new file (mode 0600) instead of standard output")
	cmd.MarkFlagRequired("owner-key")
	cmd.MarkFlagRequired("role")
	return cmd
}

func tokenRotateCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile, out string
	cmd := &cobra.Command{
		Use:   "rotate ID",
		Short: "replace a join token with a new one for the same role, name and limits",
		Long: `Replaces token ID (meshctl token list) with a new secret in one manifest change: the old
token is refused from then on, the new one admits the same role (and lighthouse). Hosts the
old token admitted keep renewing. A --uses limit starts again for the new token.`,
		Example: `  meshctl token rotate 3f2a9c1d0b7e --owner-key owner.key --out lighthouse.token`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			tok, gen, err := addToken(cmd.Context(), c, key, manifest.JoinToken{}, args[0])
			if err != nil {
				return err
			}
			return emitToken(cmd, tok, out, fmt.Sprintf("token %s replaces %s", jointoken.IDOf(tok.Hash()), args[0]), gen)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().StringVar(&out, "out", "", "write the new token to this file (mode 0600, replaced in one step) instead of standard output")
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

func tokenRevokeCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "remove a join token from the manifest: no new host joins with it",
		Long: `Removes token ID (meshctl token list) from the manifest. Hosts it admitted keep their
certificates and renew them; to cut one off, meshctl revoke it.`,
		Example: `  meshctl token revoke 3f2a9c1d0b7e --owner-key owner.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			resp, err := editManifest(cmd.Context(), c, key, func(m *manifest.Manifest, _ string) error {
				i, ok := m.JoinTokenByID(args[0])
				if !ok {
					return fmt.Errorf("no join token %s in the manifest (meshctl token list shows them)", args[0])
				}
				m.JoinTokens = append(m.JoinTokens[:i], m.JoinTokens[i+1:]...)
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s: manifest generation %d\n", args[0], resp.Status.Generation)
			return nil
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

func tokenListCmd(client func() (*api.Client, error)) *cobra.Command {
	var output cli.Output
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "list the manifest's join tokens (IDs, never secrets)",
		Example: `  meshctl token list -o json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			m, _, err := currentManifest(cmd.Context(), c)
			if err != nil {
				return err
			}
			return printTokens(cmd.OutOrStdout(), output, m.JoinTokens)
		},
	}
	cli.AddOutput(cmd, &output)
	return cmd
}

// TokenRow is one line of meshctl token list -o json|yaml.
type TokenRow struct {
	ID      string     `json:"id"`
	Role    string     `json:"role"`
	Name    string     `json:"name,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Uses    int        `json:"uses,omitempty"`
}

func printTokens(w io.Writer, output cli.Output, ts []manifest.JoinToken) error {
	rows := make([]TokenRow, 0, len(ts))
	for _, t := range ts {
		rows = append(rows, TokenRow{ID: t.ID(), Role: t.Role, Name: t.Name, Expires: t.Expires, Uses: t.Uses})
	}
	return output.Print(w, rows, func(w io.Writer) error { return tokenTable(w, rows) })
}

func tokenTable(w io.Writer, rows []TokenRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tNAME\tEXPIRES\tUSES")
	for _, r := range rows {
		exp, uses := "never", "any"
		if r.Expires != nil {
			exp = r.Expires.UTC().Format(time.RFC3339)
		}
		if r.Uses > 0 {
			uses = fmt.Sprint(r.Uses)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, r.Name, exp, uses)
	}
	return tw.Flush()
}

// addToken makes a token for jt's role, or (replacing non-empty) for the
// role of the token it replaces, and sets the manifest with its hash.
func addToken(ctx context.Context, c *api.Client, key crypto.Signer, jt manifest.JoinToken, replacing string) (jointoken.Token, uint64, error) {
	var tok jointoken.Token
	resp, err := editManifest(ctx, c, key, func(m *manifest.Manifest, meshID string) error {
		var err error
		if tok, err = jointoken.New(meshID); err != nil {
			return err
		}
		if replacing != "" {
			i, ok := m.JoinTokenByID(replacing)
			if !ok {
				return fmt.Errorf("no join token %s in the manifest (meshctl token list shows them)", replacing)
			}
			m.JoinTokens[i].SHA256 = tok.Hash()
			return nil
		}
		jt.SHA256 = tok.Hash()
		m.JoinTokens = append(m.JoinTokens, jt)
		return nil
	})
	if err != nil {
		return jointoken.Token{}, 0, err
	}
	return tok, resp.Status.Generation, nil
}

// emitToken writes the token where it was asked for: a file (the only copy;
// the manifest has its hash) or standard output, and what was done to
// standard error when the token is on standard output.
func emitToken(cmd *cobra.Command, tok jointoken.Token, out, what string, gen uint64) error {
	if out == "" {
		fmt.Fprintln(cmd.OutOrStdout(), tok.String())
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: manifest generation %d\n", what, gen)
		return nil
	}
	if err := atomicfile.Write(filepath.Dir(out), filepath.Base(out), []byte(tok.String()+"\n")); err != nil {
		return fmt.Errorf("--out: %w (the token is in the manifest: meshctl token rotate makes another)", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s written to %s: manifest generation %d\n", what, out, gen)
	return nil
}

// currentManifest is the coordinator's manifest, checked against its hash,
// and the mesh's ID.
func currentManifest(ctx context.Context, c *api.Client) (*manifest.Manifest, *api.ManifestInfo, error) {
	info, err := c.Manifest(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := manifest.ParseJSON(info.Manifest)
	if err != nil {
		return nil, nil, fmt.Errorf("the coordinator's manifest: %w", err)
	}
	if m.Hash() != info.Hash {
		return nil, nil, errors.New("the coordinator sent a manifest that does not match its hash")
	}
	return m, info, nil
}

// editManifest changes the current manifest with edit (given the mesh's
// ID) and sets it, signed with key, as the transition after the head it
// read: if anyone changed the manifest in between, the coordinator refuses
// (conflict) and nothing changes.
func editManifest(ctx context.Context, c *api.Client, key crypto.Signer, edit func(m *manifest.Manifest, meshID string) error) (*api.ManifestResponse, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.MeshID == "" {
		return nil, fmt.Errorf("the coordinator serves no mesh yet (state %s)", st.State)
	}
	m, info, err := currentManifest(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := edit(m, st.MeshID); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	req, err := owner.Request(raw, info.Head, key)
	if err != nil {
		return nil, err
	}
	return c.SetManifest(ctx, req)
}
