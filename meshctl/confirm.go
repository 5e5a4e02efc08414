package meshctl

import (
	"crypto"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
)

func confirmCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "confirm",
		Short: "state, as an owner, that the coordinator's head is the newest you know (after a restart no peer could confirm)",
		Long: `A coordinator restarted from its sealed state cannot tell by itself whether its store and
its sealed state were rolled back together to an old copy: an attested peer that runs its
head confirms it, a peer that runs a newer one shows the rollback. With no peer (a lone
coordinator), it serves with its freshness unconfirmed; with peers, it does not serve
until one confirms. confirm signs the coordinator's current head with an owner key: do it
only for the head you verified (meshctl verify; with --pin, the pin's head).`,
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
	cmd.Flags().StringVar(&keyFile, "key", "", ownerKeyHelp)
	cmd.MarkFlagRequired("key")
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

// ownerKeyHelp is the help of every --key that takes an owner key.
const ownerKeyHelp = "owner key: a file meshctl keygen wrote (encrypted ones ask for the passphrase, or read $SEALMESH_KEY_PASSPHRASE), or ssh-agent: / ssh-agent:COMMENT-OR-FINGERPRINT for an Ed25519 key an ssh-agent holds (required)"
