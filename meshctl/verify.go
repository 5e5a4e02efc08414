package meshctl

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/manifest"
)

// The exit codes of meshctl verify, for scripts: each says what did not
// verify. Any other failure exits 1.
const (
	ExitAttestation      = 3 // the coordinator did not attest, or did not answer
	ExitHistory          = 4 // the history does not verify from its first transition
	ExitManifestMismatch = 5 // the active manifest is not the expected one
	ExitMeshMismatch     = 6 // the coordinator serves another mesh than --mesh-id
)

// ExitError carries the exit code of a failed verification.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the exit code for err: an ExitError's, else 1.
func ExitCode(err error) int {
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return 1
}

func fail(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// Pin is what meshctl verify writes (file "pin"): the mesh and the head it
// verified, for later commands to hold the coordinators to.
type Pin struct {
	MeshID     string `json:"meshID"`
	Head       string `json:"head"`
	Generation uint64 `json:"generation"`
	CA         string `json:"caSHA256"`
}

// readPin reads a pin file meshctl verify wrote.
func readPin(path string) (*Pin, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--pin-file: %w", err)
	}
	var p Pin
	if err := json.Unmarshal(b, &p); err != nil || p.MeshID == "" || p.Head == "" {
		return nil, fmt.Errorf("--pin-file %s: not a pin meshctl verify wrote", path)
	}
	return &p, nil
}

// verifyResult is meshctl verify's report (-o json).
type verifyResult struct {
	Pin
	Manifest    string   `json:"manifest"`
	Coordinator string   `json:"coordinator"`
	Files       []string `json:"files,omitempty"`
	// Immutable: the active manifest has no owners, so it is final.
	Immutable bool `json:"immutable,omitempty"`
	// CAGeneration is the CA the active manifest issues under; during a
	// rotation, the previous one is trusted too (TrustsPreviousCA).
	CAGeneration     uint64 `json:"caGeneration"`
	TrustsPreviousCA bool   `json:"trustsPreviousCA,omitempty"`
}

func verifyCmd(client func() (*api.Client, error), meshID *string) *cobra.Command {
	var expected, outDir string
	var output cli.Output
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "verify the mesh before trusting it: the coordinator's attestation, its whole history, the manifest, the mesh",
		Example: `  meshctl verify --mesh-id $SEALMESH_MESH_ID --manifest-file manifest.yaml --out-dir verified
  meshctl verify --out-dir "" -o json`,
		Long: `verify attests the coordinator (attested TLS with --coordinator-policy-file, on a fresh
nonce of this client's), fetches the whole history and checks it here, from the first
transition: hash links, contiguous generations, every transition signed by an owner of
the manifest it replaces, each manifest and the CA certificate against their hashes. It
compares the active manifest with --manifest-file if given and the mesh with --mesh-id, and
writes to --out-dir: ca.crt (the mesh's Nebula CA; nebula-cert verify reads it), each
generation's manifest, and pin (mesh ID, head, generation), which later commands and
agents can hold coordinators to.

Exit codes: 3 the coordinator did not attest or answer, 4 the history does not verify,
5 the active manifest is not --manifest, 6 another mesh than --mesh-id; 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := client()
			if err != nil {
				return err
			}
			info, err := c.Manifest(ctx)
			if err != nil {
				return fetchFailed(c, err)
			}
			entries, err := c.History(ctx)
			if err != nil {
				return fetchFailed(c, err)
			}
			v, err := verifyHistory(entries, info)
			if err != nil {
				return err
			}
			if *meshID != "" && v.MeshID() != *meshID {
				return fail(ExitMeshMismatch, "the coordinator serves mesh %s, not %s (--mesh-id)", v.MeshID(), *meshID)
			}
			if expected != "" {
				raw, err := os.ReadFile(expected)
				if err != nil {
					return fmt.Errorf("--manifest: %w", err)
				}
				want, err := manifest.Parse(raw)
				if err != nil {
					return fmt.Errorf("--manifest %s: %w", expected, err)
				}
				if got := v.Manifests[len(v.Manifests)-1]; got.Hash() != want.Hash() {
					return fail(ExitManifestMismatch, "the active manifest %s (generation %d) is not %s (%s)", got.Hash()[:12], v.Chain[len(v.Chain)-1].Generation, expected, want.Hash()[:12])
				}
			}
			res := verifyResult{Pin: Pin{MeshID: v.MeshID(), Head: v.Head(), Generation: v.Chain[len(v.Chain)-1].Generation, CA: sha256Hex([]byte(info.CA))},
				Manifest: info.Hash, Coordinator: c.URL(), Immutable: v.Manifests[len(v.Manifests)-1].Immutable(),
				CAGeneration: v.Manifests[len(v.Manifests)-1].CAGen(), TrustsPreviousCA: v.Manifests[len(v.Manifests)-1].TrustsPreviousCA()}
			if outDir != "" {
				if res.Files, err = writeVerified(outDir, v, info, entries, res.Pin); err != nil {
					return err
				}
			}
			return printVerify(cmd.OutOrStdout(), output, res)
		},
	}
	cmd.Flags().StringVar(&expected, "manifest-file", "", "the manifest the data owner expects to be active (JSON or YAML)")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "where to write ca.crt, the manifests and the pin; empty: write nothing")
	cli.Rename(cmd.Flags(), "manifest", "manifest-file")
	cli.Rename(cmd.Flags(), "out", "out-dir")
	cli.AddOutput(cmd, &output)
	return cmd
}

// fetchFailed is the exit for a coordinator that did not answer: of another
// mesh than --mesh-id (its answers carry the mesh), or not attested.
func fetchFailed(c *api.Client, err error) error {
	if errors.Is(err, api.ErrWrongMesh) {
		return fail(ExitMeshMismatch, "%w", err)
	}
	return fail(ExitAttestation, "coordinator %s: %w", c.URL(), err)
}

// verifyHistory re-checks the coordinator's history here, and that the
// manifest and CA it serves are the history's newest.
func verifyHistory(entries []api.HistoryEntry, info *api.ManifestInfo) (*history.Verified, error) {
	in := make([]history.Entry, len(entries))
	for i, e := range entries {
		if len(e.Transition) == 0 {
			return nil, fail(ExitHistory, "generation %d comes without its transition (a coordinator older than meshctl verify)", e.Generation)
		}
		in[i] = history.Entry{Transition: e.Transition, Manifest: e.Manifest}
	}
	v, err := history.VerifyChain(in)
	if err != nil {
		return nil, fail(ExitHistory, "the history does not verify: %w", err)
	}
	head := v.Chain[len(v.Chain)-1]
	switch {
	case v.Head() != info.Head:
		return nil, fail(ExitHistory, "the coordinator serves head %s, its history ends at %s", info.Head, v.Head())
	case sha256Hex(info.Manifest) != head.Manifest:
		return nil, fail(ExitHistory, "the manifest served is not the one the head names")
	case sha256Hex([]byte(info.CA)) != head.CA:
		return nil, fail(ExitHistory, "the CA certificate served is not the one the head names")
	}
	return v, nil
}

// writeVerified writes ca.crt, manifest-<generation>.json and pin to dir.
func writeVerified(dir string, v *history.Verified, info *api.ManifestInfo, entries []api.HistoryEntry, pin Pin) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--out-dir: %w", err)
	}
	files := map[string][]byte{"ca.crt": []byte(info.CA)}
	for _, e := range entries {
		files[fmt.Sprintf("manifest-%d.json", e.Generation)] = e.Manifest
	}
	b, err := json.MarshalIndent(pin, "", "  ")
	if err != nil {
		return nil, err
	}
	files["pin"] = append(b, '\n')
	var out []string
	for name, data := range files {
		if err := atomicfile.WriteMode(dir, name, data, 0o644); err != nil {
			return nil, fmt.Errorf("--out-dir: %w", err)
		}
		out = append(out, filepath.Join(dir, name))
	}
	return out, nil
}

func printVerify(w io.Writer, output cli.Output, r verifyResult) error {
	return output.Print(w, r, func(w io.Writer) error {
		fmt.Fprintf(w, "verified: mesh %s, generation %d, head %s, manifest %s, CA sha256 %s (coordinator %s)\n",
			r.MeshID, r.Generation, r.Head, r.Manifest, r.CA, r.Coordinator)
		fmt.Fprintf(w, "CA generation %d", r.CAGeneration)
		if r.TrustsPreviousCA {
			fmt.Fprintf(w, " (rotating: generation %d still trusted until meshctl rotate ca --finish)", r.CAGeneration-1)
		}
		fmt.Fprintln(w)
		if r.Immutable {
			fmt.Fprintln(w, "immutable: the manifest has no owners; no transition can follow it")
		}
		return nil
	})
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
