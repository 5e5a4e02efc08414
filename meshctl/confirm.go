package meshctl

import (
	"crypto"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/internal/cli"
)

func confirmCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "confirm",
		Short: "state, as an owner, that the coordinator's head is the newest you know (after a restart no peer could confirm)",
		Example: `  meshctl confirm --owner-key owner.key
  meshctl --pin-file verified/pin confirm --owner-key owner.key`,
		Long: `A coordinator restarted from its sealed state cannot tell by itself whether its store and
its sealed state were rolled back together to an old copy: an attested peer that runs its
head confirms it, a peer that runs a newer one shows the rollback. With no peer (a lone
coordinator), it serves with its freshness unconfirmed; with peers, it does not serve
until one confirms. confirm signs the coordinator's current head with an owner key: do it
only for the head you verified (meshctl verify; with --pin-file, the pin's head).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if st.Head == "" {
				return fmt.Errorf("the coordinator is %s and has no verified head to confirm", st.State)
			}
			proof, err := api.ProveOwnerWith(key, api.PurposeFresh(st.Head), time.Now())
			if err != nil {
				return err
			}
			got, err := c.ConfirmFresh(cmd.Context(), proof)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "confirmed generation %d (head %s) as the newest; coordinator %s\n", got.Generation, got.Head, got.State)
			return nil
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

// ownerClient loads the owner key in keyFile and the client, for the
// commands an owner signs.
func ownerClient(keyFile string, client func() (*api.Client, error)) (crypto.Signer, *api.Client, error) {
	key, err := owner.LoadOwnerSigner(keyFile)
	if err != nil {
		return nil, nil, err
	}
	c, err := client()
	return key, c, err
}

// ownerKeyFlag adds --owner-key, and its spelling before issue 28, --key.
func ownerKeyFlag(cmd *cobra.Command, p *string, help string) {
	cmd.Flags().StringVar(p, "owner-key", "", help)
	cli.Rename(cmd.Flags(), "key", "owner-key")
}

// ownerKeyHelp is the help of every --owner-key that must be given.
const ownerKeyHelp = "owner key: a file meshctl keygen wrote (encrypted ones ask for the passphrase, or read $SEALMESH_KEY_PASSPHRASE), or ssh-agent: / ssh-agent:COMMENT-OR-FINGERPRINT for an Ed25519 key an ssh-agent holds (required)"
