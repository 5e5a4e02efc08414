package meshctl

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/manifest"
)

var errAlready = errors.New("already done")

func revokeCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "revoke POD|NAME|IP|FINGERPRINT",
		Short: "revoke a host's certificate and key, signed with an owner key",
		Example: `  meshctl revoke default/pod-a --owner-key owner.key
  meshctl revoke 10.42.0.7 --owner-key owner.key`,
		Long: `Finds the enrolled host (a pod as namespace/name, its certificate name, overlay IP or
certificate fingerprint), adds its certificate and key to the manifest's revoked list and
sets the manifest, signed with an owner key. Every host refuses the certificate and closes
its tunnels once its agent sees the new manifest (within seconds), and no coordinator
issues another certificate to the key: the workload must start again with a new key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			ctx, what := cmd.Context(), args[0]
			proof, err := api.ProveOwnerWith(key, api.PurposeHosts, time.Now())
			if err != nil {
				return err
			}
			st, err := c.Hosts(ctx, proof, what)
			if err != nil {
				return err
			}
			var found []api.Host
			for _, h := range st.Hosts {
				if h.Named(what) {
					found = append(found, h)
				}
			}
			switch len(found) {
			case 0:
				return fmt.Errorf("no enrolled host is %q (give a pod as namespace/name, a certificate name, an overlay IP or a fingerprint; meshctl status lists them)", what)
			case 1:
			default:
				var names []string
				for _, h := range found {
					names = append(names, h.Name+" "+h.Fingerprint)
				}
				return fmt.Errorf("%q names %d hosts (%s): give the fingerprint", what, len(found), strings.Join(names, ", "))
			}
			h := found[0]
			name := h.Name
			if h.Workload != "" {
				name += " (" + h.Workload + ")"
			}
			already := false
			resp, err := editManifest(ctx, c, key, func(m *manifest.Manifest, _ string) error {
				already = slices.ContainsFunc(m.Revoked, func(r manifest.Revoked) bool { return r.Fingerprint == h.Fingerprint })
				if already {
					return errAlready
				}
				m.Revoked = append(m.Revoked, manifest.Revoked{Fingerprint: h.Fingerprint, Holder: h.Holder, Name: name})
				return nil
			})
			if already {
				fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) is already revoked\n", h.Name, h.Fingerprint)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s, certificate %s: manifest generation %d; hosts close its tunnels when their agents see it\n",
				name, h.Fingerprint, resp.Status.Generation)
			return nil
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.MarkFlagRequired("owner-key")
	return cmd
}
