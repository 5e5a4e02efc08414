package meshctl

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/shamir"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/manifest"
)

func keygenCmd() *cobra.Command {
	var out, kind string
	var force, encrypt bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "make an owner key (signs manifest changes) or a seed-share key (receives the seed for recovery)",
		Long: `Writes a new private key to --out (mode 0600; never over an existing file unless
--force) and prints its public key for the manifest.

An owner key with --encrypt is written in OpenSSH's format, encrypted with a passphrase
(asked twice on the terminal, or $SEALMESH_KEY_PASSPHRASE): meshctl asks for it when the
key is used, and ssh-add loads it, so the key can live in an ssh-agent (--owner-key ssh-agent:)
or behind one on a hardware token.`,
		Example: `  meshctl keygen --out owner.key
  meshctl keygen --encrypt --out owner.key && ssh-add owner.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pemBytes []byte
			var pub string
			var err error
			switch {
			case encrypt && kind != "owner":
				return fmt.Errorf("--encrypt: only owner keys (seed-share keys are X25519, which OpenSSH's format does not hold)")
			case encrypt:
				var key ed25519.PrivateKey
				if key, _, pub, err = owner.NewOwnerKey(); err != nil {
					return err
				}
				pass, perr := owner.Passphrase("passphrase for the new key: ", true)
				if perr != nil {
					return perr
				}
				pemBytes, err = owner.EncryptOwnerKey(key, pass)
			case kind == "owner":
				_, pemBytes, pub, err = owner.NewOwnerKey()
			case kind == "seed-share":
				_, pemBytes, pub, err = owner.NewShareKey()
			default:
				return fmt.Errorf("--kind %q: want owner or seed-share", kind)
			}
			if err != nil {
				return err
			}
			write := writeNew
			if force {
				// Replaced in one step: a crash leaves the old key or the new.
				write = func(path string, b []byte) error {
					return atomicfile.Write(filepath.Dir(path), filepath.Base(path), b)
				}
			}
			if err := write(out, pemBytes); err != nil {
				return fmt.Errorf("--out: %w (--force replaces it; the key it holds is then lost)", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key: %s\npublicKey: %s\n", out, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (required)")
	cmd.Flags().StringVar(&kind, "kind", "owner", "owner or seed-share")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key file (the key it holds is lost)")
	cmd.Flags().BoolVar(&encrypt, "encrypt", false, "encrypt the owner key with a passphrase (OpenSSH format; ssh-add loads it)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func manifestCmd(client func() (*api.Client, error)) *cobra.Command {
	cmd := cli.Group(&cobra.Command{Use: "manifest", Short: "set, show and trace the mesh's manifest"})
	cmd.AddCommand(manifestSetCmd(client), manifestGetCmd(client), manifestHistoryCmd(client), manifestDiffCmd(client), manifestProposeCmd(client), manifestApproveCmd(client))
	return cmd
}

func manifestSetCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile, parent, outDir string
	var unrevoke []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "set MANIFEST",
		Short: "create the mesh, or replace its manifest, signed with an owner key",
		Example: `  meshctl manifest set manifest.yaml --owner-key owner.key
  meshctl manifest set manifest.yaml --owner-key owner.key --dry-run`,
		Long: `Signs MANIFEST (JSON or YAML) with an owner key and sends it. The update names the
transition it replaces (the current head, or --parent); if the manifest moved since,
the coordinator refuses with a conflict and nothing changes.

Creating the mesh writes, to --out-dir, the unlock key (when the coordinator seals with
one) and each seed-share owner's encrypted share. They are shown only this once.

Revocations (meshctl revoke) stay: a manifest that drops one of the current
manifest's revocations is refused, naming it, unless --unrevoke names its
fingerprint. The current manifest again is no new generation.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			creating := false
			if !cmd.Flags().Changed("parent") {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if st.State != api.StateWaiting {
					parent = st.Head
				}
				creating = st.State == api.StateWaiting
			}
			m, err := manifest.Parse(raw)
			if err != nil {
				return err
			}
			if dryRun {
				return printDiff(cmd, c, m)
			}
			if !creating && !cmd.Flags().Changed("parent") {
				// Run again after an answer was lost: send the request
				// that was applied (same parent, so the same signature)
				// and get its answer, not a second transition.
				if p, ok, err := appliedParent(ctx, c, m.Hash()); err != nil {
					return err
				} else if ok {
					parent = p
				}
			}
			if creating || parent == "" {
				// The unlock key and the seed shares are shown only
				// once: make sure they can be written before the mesh
				// exists.
				if err := canWrite(outDir, secretFiles(m)); err != nil {
					return fmt.Errorf("--out-dir: %w", err)
				}
			}
			req, err := owner.Request(raw, parent, key)
			if err != nil {
				return err
			}
			req.Unrevoke = unrevoke
			resp, err := c.SetManifest(ctx, req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			s := resp.Status
			if resp.Unchanged {
				fmt.Fprintln(out, "the manifest is the current one; nothing changed")
			}
			if resp.Replayed {
				fmt.Fprintln(out, "this signed request was applied already; nothing changed")
				if parent == "" {
					fmt.Fprintln(out, "the unlock key is shown only once and is not sent again; if it is lost, see meshctl seed-shares and meshctl recover --force")
				}
			}
			fmt.Fprintf(out, "manifest %s is generation %d (head %s); coordinator %s, nebula CA %s\n", s.ManifestHash, s.Generation, s.Head, s.State, s.CAFingerprint)
			if creating && s.MeshID != "" {
				fmt.Fprintf(out, "mesh ID: %s (pin it: --mesh-id for coordinators, agents, lighthouses and meshctl, or $SEALMESH_MESH_ID)\n", s.MeshID)
			}
			if resp.UnlockKey != "" {
				p := filepath.Join(outDir, "unlock-key")
				if err := writeNew(p, []byte(resp.UnlockKey+"\n")); err != nil {
					return fmt.Errorf("the mesh exists but its unlock key could not be saved (%v): it is %s", err, resp.UnlockKey)
				}
				fmt.Fprintf(out, "unlock key: %s (keep it offline; a restarted coordinator needs it: meshctl unlock)\n", p)
			}
			return writeShares(out, outDir, m.SeedShareOwners, resp.SeedShares, true)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().StringVar(&parent, "parent", "", "head transition this replaces (default: the coordinator's current head)")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "where creating the mesh writes the unlock key and seed shares")
	cmd.Flags().StringSliceVar(&unrevoke, "unrevoke", nil, "fingerprint of a revocation this manifest lifts on purpose (repeat for each)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would change (meshctl manifest diff) and send nothing")
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

// appliedParent finds whether the manifest with hash is the current one and,
// if so, the parent its transition named ("" for the first).
func appliedParent(ctx context.Context, c *api.Client, hash string) (string, bool, error) {
	h, err := c.History(ctx)
	if err != nil {
		return "", false, err
	}
	if len(h) == 0 || h[len(h)-1].Hash != hash {
		return "", false, nil
	}
	if len(h) == 1 {
		return "", true, nil
	}
	return h[len(h)-2].Head, true, nil
}

// writeShares writes each seed share into dir, never overwriting. With
// named (the seed-share owners of a manifest the caller holds), a share for
// anyone else is not written.
func writeShares(out io.Writer, dir string, named []manifest.PublicKey, shares []api.SeedShare, checkNames bool) error {
	var errs []error
	for _, sh := range shares {
		// The owner's name comes from the coordinator: only a seed-share
		// owner named by a manifest the caller holds names a file, and
		// only inside dir.
		if checkNames && !slices.ContainsFunc(named, func(o manifest.PublicKey) bool { return o.Name == sh.Owner }) {
			errs = append(errs, fmt.Errorf("the coordinator sent a seed share for %q, which the manifest does not name: not written", sh.Owner))
			continue
		}
		p := filepath.Join(dir, shareFile(sh.Owner))
		if err := writeNew(p, sh.Share); err != nil {
			errs = append(errs, fmt.Errorf("seed share for %s: %w", sh.Owner, err))
			continue
		}
		fmt.Fprintf(out, "seed share for %s: %s\n", sh.Owner, p)
	}
	return errors.Join(errs...)
}

func seedSharesCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile, outDir string
	cmd := &cobra.Command{
		Use:     "seed-shares",
		Short:   "fetch the encrypted seed shares made with the mesh (owners only)",
		Example: `  meshctl seed-shares --owner-key owner.key --out-dir shares`,
		Long: `Fetches the seed shares the coordinators keep in the store, proving with an owner key
that you may, and writes each to --out-dir as OWNER.seed-share (never over a file).
They are encrypted to their seed-share owners: for when the answer to the first
manifest was lost. A locked coordinator serves them too; with one, a seed-share
owner brings the mesh back: meshctl recover --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			proof, err := api.ProveOwnerWith(key, api.PurposeSeedShares, time.Now())
			if err != nil {
				return err
			}
			resp, err := c.SeedShares(cmd.Context(), proof)
			if err != nil {
				return err
			}
			var names []string
			for _, sh := range resp.SeedShares {
				names = append(names, shareFile(sh.Owner))
			}
			if err := canWrite(outDir, names); err != nil {
				return fmt.Errorf("--out-dir: %w", err)
			}
			return writeShares(cmd.OutOrStdout(), outDir, nil, resp.SeedShares, false)
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "where to write the seed shares")
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

func manifestDiffCmd(client func() (*api.Client, error)) *cobra.Command {
	return &cobra.Command{
		Use:     "diff MANIFEST",
		Short:   "show what setting MANIFEST would change, by field path (+ added, - removed, ~ changed)",
		Example: `  meshctl manifest diff manifest.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[0])
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			return printDiff(cmd, c, m)
		},
	}
}

// printDiff prints the change from the current manifest to m, and the
// revocations it would lift (which the coordinator refuses without
// --unrevoke).
func printDiff(cmd *cobra.Command, c *api.Client, m *manifest.Manifest) error {
	info, err := c.Manifest(cmd.Context())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if info.Hash == m.Hash() {
		fmt.Fprintf(out, "no change: the manifest is the current one (generation %d)\n", info.Generation)
		return nil
	}
	changes, err := Changes(info.Manifest, m.Canonical())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "from generation %d (manifest %s) to manifest %s:\n", info.Generation, info.Hash[:12], m.Hash()[:12])
	for _, ch := range changes {
		fmt.Fprintf(out, "  %s\n", ch)
	}
	cur, err := manifest.ParseJSON(info.Manifest)
	if err != nil {
		return err
	}
	for _, r := range cur.Revoked {
		if !slices.ContainsFunc(m.Revoked, func(n manifest.Revoked) bool { return n.Fingerprint == r.Fingerprint }) {
			fmt.Fprintf(out, "lifts the revocation of %s %s (refused without --unrevoke %s)\n", r.Name, r.Fingerprint, r.Fingerprint)
		}
	}
	return nil
}

func manifestGetCmd(client func() (*api.Client, error)) *cobra.Command {
	output := cli.YAML
	cmd := &cobra.Command{
		Use:   "get",
		Short: "print the current manifest",
		Long: `Prints the manifest the coordinator serves, as YAML (what meshctl manifest set reads
back to the same manifest) or JSON (its canonical encoding, which its hash names). The
generation, head and hash go to stderr as a comment.`,
		Example: `  meshctl manifest get > manifest.yaml
  meshctl manifest get -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == cli.Table {
				return errors.New("-o table: a manifest is a document; want yaml or json")
			}
			c, err := client()
			if err != nil {
				return err
			}
			info, err := c.Manifest(cmd.Context())
			if err != nil {
				return err
			}
			m, err := manifest.ParseJSON(info.Manifest)
			if err != nil {
				return fmt.Errorf("the coordinator's manifest: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "# generation %d, head %s, manifest %s\n", info.Generation, info.Head, info.Hash)
			out := m.Canonical()
			if output == cli.YAML {
				if out, err = m.YAML(); err != nil {
					return err
				}
			} else {
				var b bytes.Buffer
				json.Indent(&b, out, "", "  ")
				out = append(b.Bytes(), '\n')
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().VarP(&output, "output", "o", "output format: yaml or json")
	return cmd
}

// HistoryRow is one transition in meshctl manifest history -o json|yaml.
type HistoryRow struct {
	Generation uint64          `json:"generation"`
	Head       string          `json:"head"`
	Time       time.Time       `json:"time"`
	Signer     string          `json:"signer,omitempty"`
	Manifest   string          `json:"manifestHash"`
	Changes    []string        `json:"changes"`
	Document   json.RawMessage `json:"manifest"`
}

func manifestHistoryCmd(client func() (*api.Client, error)) *cobra.Command {
	var output cli.Output
	cmd := &cobra.Command{
		Use:   "history",
		Short: "list every transition: generation, head, time, signer, and what changed",
		Example: `  meshctl manifest history
  meshctl manifest history -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			h, err := c.History(cmd.Context())
			if err != nil {
				return err
			}
			rows := make([]HistoryRow, 0, len(h))
			var prev []byte
			for _, e := range h {
				r := HistoryRow{Generation: e.Generation, Head: e.Head, Time: e.Time, Signer: e.Signer, Manifest: e.Hash, Document: e.Manifest, Changes: []string{}}
				if prev != nil {
					if r.Changes, err = Changes(prev, e.Manifest); err != nil {
						return fmt.Errorf("generation %d: %w", e.Generation, err)
					}
				}
				rows, prev = append(rows, r), e.Manifest
			}
			return output.Print(cmd.OutOrStdout(), rows, func(w io.Writer) error {
				PrintHistory(w, h)
				return nil
			})
		},
	}
	cli.AddOutput(cmd, &output)
	return cmd
}

// PrintHistory writes each transition and what changed from the one before
// (Changes: field paths).
func PrintHistory(w io.Writer, h []api.HistoryEntry) {
	var prev []byte
	for _, e := range h {
		signer := e.Signer
		if signer == "" {
			signer = "-"
		}
		fmt.Fprintf(w, "generation %d  head %s  %s  signed by %s  manifest %s\n", e.Generation, e.Head[:12], e.Time.UTC().Format(time.RFC3339), signer, e.Hash[:12])
		if prev == nil {
			fmt.Fprintln(w, "  (first manifest)")
		} else if changes, err := Changes(prev, e.Manifest); err != nil {
			fmt.Fprintf(w, "  (cannot compare: %v)\n", err)
		} else if len(changes) == 0 {
			fmt.Fprintln(w, "  (no change)")
		} else {
			for _, c := range changes {
				fmt.Fprintf(w, "  %s\n", c)
			}
		}
		prev = e.Manifest
	}
}

func unlockCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:     "unlock",
		Short:   "hand a restarted coordinator its unlock key",
		Example: `  meshctl unlock --unlock-key-file unlock-key`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			s, err := c.Unlock(cmd.Context(), strings.TrimSpace(string(k)))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "coordinator %s at generation %d\n", s.State, s.Generation)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "unlock-key-file", "unlock-key", "file holding the unlock key")
	return cmd
}

func rotateCmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	rot := cli.Group(&cobra.Command{Use: "rotate", Short: "rotate keys"})
	uk := &cobra.Command{
		Use:     "unlock-key",
		Short:   "replace the unlock key (the current one authorises it); writes the new one over the file",
		Example: `  meshctl rotate unlock-key --unlock-key-file unlock-key`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			next, err := c.RotateUnlockKey(cmd.Context(), strings.TrimSpace(string(k)))
			if err != nil {
				return err
			}
			if err := atomicfile.Write(filepath.Dir(keyFile), filepath.Base(keyFile), []byte(next+"\n")); err != nil {
				return fmt.Errorf("rotated, but the new key could not be saved (%v): it is %s", err, next)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unlock key rotated; the new one is in %s\n", keyFile)
			return nil
		},
	}
	uk.Flags().StringVar(&keyFile, "unlock-key-file", "unlock-key", "file holding the current unlock key")
	rot.AddCommand(uk, rotateCACmd(client))
	return rot
}

func rotateCACmd(client func() (*api.Client, error)) *cobra.Command {
	var keyFile string
	var finish bool
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "rotate the mesh CA in two owner-signed steps: add the next generation, then --finish",
		Long: `Without --finish: sets the manifest's CA to the next generation (its key derived from the
seed, like the first) while hosts still trust the current one. Every host renews onto the
new CA as soon as it sees the manifest (within seconds for pods and lighthouses; at its
next meshctl host renew for a VM), trusting both meanwhile: no tunnel drops.

With --finish: the previous generation is trusted no more. Hosts renew again onto trust in
the new CA alone, and a certificate under the old one is refused by every host from then
on. Finish once every host has renewed (meshctl status --owner-key shows their expiry).

Both steps are manifest changes signed with an owner key (or proposals where the manifest
needs several owners); meshctl manifest history shows them as ca.generation and
ca.trustPrevious changes.`,
		Example: `  meshctl rotate ca --owner-key owner.key
  meshctl rotate ca --finish --owner-key owner.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, c, err := ownerClient(keyFile, client)
			if err != nil {
				return err
			}
			var gen uint64
			resp, err := editManifest(cmd.Context(), c, key, func(m *manifest.Manifest, _ string) error {
				switch {
				case finish && !m.TrustsPreviousCA():
					return fmt.Errorf("no rotation to finish: CA generation %d is the only one trusted", m.CAGen())
				case finish:
					m.CA.TrustPrevious = false
				case m.TrustsPreviousCA():
					return fmt.Errorf("a rotation to CA generation %d is in progress: finish it first (meshctl rotate ca --finish)", m.CAGen())
				default:
					m.CA = &manifest.CAGeneration{Generation: m.CAGen() + 1, TrustPrevious: true}
				}
				gen = m.CAGen()
				return nil
			})
			if err != nil {
				return err
			}
			if finish {
				fmt.Fprintf(cmd.OutOrStdout(), "CA generation %d alone is trusted (manifest generation %d, CA %s); hosts renew onto it now\n", gen, resp.Status.Generation, resp.Status.CAFingerprint)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "CA generation %d added (manifest generation %d, CA %s); hosts renew onto it and trust both; then meshctl rotate ca --finish\n", gen, resp.Status.Generation, resp.Status.CAFingerprint)
			}
			return nil
		},
	}
	ownerKeyFlag(cmd, &keyFile, ownerKeyHelp)
	cmd.Flags().BoolVar(&finish, "finish", false, "end the rotation: trust the new generation only")
	cmd.MarkFlagRequired("owner-key")
	return cmd
}

func recoverCmd(client func() (*api.Client, error)) *cobra.Command {
	var shareFile, keyFile, outDir string
	var force bool
	cmd := &cobra.Command{
		Use:     "recover",
		Short:   "restore a coordinator that has lost its secrets, from a seed share",
		Example: `  meshctl recover --seed-share-file bob.seed-share --seed-share-key bob.key`,
		Args:    cobra.NoArgs,
		Long: `Opens your seed share with your seed-share key (locally), encrypts the seed to the
coordinator's recovery key and hands it over. The coordinator accepts it only if it
verifies the mesh's history in the store, and continues the same CA and history.

Where the manifest splits the seed (seedShareThreshold k), your share is one of n: the
coordinator checks it against the commitments kept in the store, says how many more it
needs, and recovers once k seed-share owners have each run meshctl recover (against the
same coordinator process: it keeps the shares in memory).

Over an https URL the coordinator and its recovery key are attested (attested TLS,
--coordinator-policy-file); over http nothing authenticates them: development only.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := owner.LoadShareKey(keyFile)
			if err != nil {
				return err
			}
			share, err := os.ReadFile(shareFile)
			if err != nil {
				return err
			}
			opened, err := seal.OpenWith(key, seal.SeedShareInfo, share)
			if err != nil {
				return fmt.Errorf("%s: %w", shareFile, err)
			}
			c, err := client()
			if err != nil {
				return err
			}
			rk, err := c.RecoveryKey(cmd.Context())
			if err != nil {
				return err
			}
			enc, err := seal.SealTo(rk, seal.RecoveryInfo, opened)
			if err != nil {
				return err
			}
			req := &api.RecoverRequest{Seed: enc, Force: force}
			if shamir.IsShare(opened) {
				// One share of a k-of-n split seed: the coordinator
				// keeps it until k owners have run meshctl recover.
				req = &api.RecoverRequest{Share: enc, Force: force}
			}
			resp, err := c.Recover(cmd.Context(), req)
			if err != nil {
				return err
			}
			if resp.SharesNeeded > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "share accepted: the coordinator needs %d more (other seed-share owners run meshctl recover with theirs)\n", resp.SharesNeeded)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "coordinator %s at generation %d, nebula CA %s\n", resp.Status.State, resp.Status.Generation, resp.Status.CAFingerprint)
			if resp.UnlockKey != "" {
				p := filepath.Join(outDir, "unlock-key")
				if err := os.WriteFile(p, []byte(resp.UnlockKey+"\n"), 0o600); err != nil {
					return fmt.Errorf("recovered, but the new unlock key could not be saved (%v): it is %s", err, resp.UnlockKey)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "new unlock key: %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&shareFile, "seed-share-file", "", "your seed share (required)")
	cmd.Flags().StringVar(&keyFile, "seed-share-key", "", "your seed-share key: the file meshctl keygen --kind seed-share wrote (required)")
	cli.Rename(cmd.Flags(), "seed-share", "seed-share-file")
	cli.Rename(cmd.Flags(), "key", "seed-share-key")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "where to write the new unlock key")
	cmd.Flags().BoolVar(&force, "force", false, "replace sealed state the coordinator cannot open (a lost unlock key)")
	cmd.MarkFlagRequired("seed-share-file")
	cmd.MarkFlagRequired("seed-share-key")
	return cmd
}

// shareFile is the file a seed-share owner's share is written to. Manifest
// validation keeps names to [a-z0-9-]; the base name keeps any other inside
// the directory all the same.
func shareFile(owner string) string {
	return filepath.Base(filepath.Clean("/"+owner)) + ".seed-share"
}

// secretFiles are the files creating the mesh of m writes.
func secretFiles(m *manifest.Manifest) []string {
	out := []string{"unlock-key"}
	for _, o := range m.SeedShareOwners {
		out = append(out, shareFile(o.Name))
	}
	return out
}

// canWrite checks that dir is a directory this process can write to and that
// none of names exists in it yet.
func canWrite(dir string, names []string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".meshctl-probe-")
	if err != nil {
		return err
	}
	probe.Close()
	os.Remove(probe.Name())
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return fmt.Errorf("%s exists already: move it away first (it may be another mesh's)", filepath.Join(dir, n))
		}
	}
	return nil
}

// writeNew writes a secret to a file that must not exist yet, readable by its
// owner only: an existing key is never replaced (or left with its old mode).
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists already: remove it first, or write elsewhere", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
