package meshctl

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slackhq/nebula/cert"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/jointoken"
)

// The files of a host's directory (meshctl host enrol --out).
const (
	hostCert   = "host.crt"
	hostCA     = "ca.crt"
	hostConfig = "config.yml"
	hostMesh   = "mesh.id"
)

func hostCmd(client func() (*api.Client, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "enrol and renew a VM or bare-metal host that runs stock nebula",
		Long: `For hosts without sealmesh's agent: a role with joinToken: true admits them by join token
(meshctl token create). The host's key is made where it runs, by stock nebula-cert keygen;
meshctl sends only the public key, and writes the certificate, the CA and a config.yml that
stock nebula runs as is (lighthouses, relays, firewall and blocklist from the manifest).
Renewal proves possession of the key and needs no token. docs/vm.md walks through it.`,
	}
	cli.Group(cmd).AddCommand(hostEnrolCmd(client), hostRenewCmd(client))
	return cmd
}

func hostEnrolCmd(client func() (*api.Client, error)) *cobra.Command {
	var tokenFile, pubFile, keyPath, out string
	var o hostOptions
	cmd := &cobra.Command{
		Use:   "enrol --token-file FILE --pub-file host.pub --out DIR",
		Short: "enrol a host's public key with a join token; write host.crt, ca.crt and config.yml",
		Example: `  nebula-cert keygen -out-key /etc/nebula/host.key -out-pub /etc/nebula/host.pub
  meshctl host enrol --token-file vm.token --pub-file /etc/nebula/host.pub --out /etc/nebula
  nebula -config /etc/nebula/config.yml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			tok, err := jointoken.Parse(string(raw))
			if err != nil {
				return fmt.Errorf("--token-file %s: %w", tokenFile, err)
			}
			pemPub, err := os.ReadFile(pubFile)
			if err != nil {
				return fmt.Errorf("--pub-file: %w", err)
			}
			pub, _, curve, err := cert.UnmarshalPublicKeyFromPEM(pemPub)
			if err != nil || curve != cert.Curve_CURVE25519 {
				return fmt.Errorf("--pub-file %s: want a Nebula X25519 public key (nebula-cert keygen -out-pub): %v", pubFile, err)
			}
			if keyPath == "" {
				keyPath = strings.TrimSuffix(pubFile, ".pub") + ".key"
			}
			if keyPath, err = filepath.Abs(keyPath); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			e, err := enrol.JoinPublic(cmd.Context(), c, string(raw), pub)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			o.key = keyPath
			if err := writeHost(out, e, tok.MeshID, o); err != nil {
				return err
			}
			return printHost(cmd.OutOrStdout(), "enrolled", out, e)
		},
	}
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the join token (meshctl token create --out) (required)")
	cmd.Flags().StringVar(&pubFile, "pub-file", "", "the host's Nebula public key (nebula-cert keygen -out-pub) (required)")
	cmd.Flags().StringVar(&keyPath, "key-path", "", "where nebula finds the private key, for config.yml (default: --pub-file with .key for .pub)")
	cli.Rename(cmd.Flags(), "token", "token-file")
	cli.Rename(cmd.Flags(), "pub", "pub-file")
	cmd.Flags().StringVar(&out, "out", "", "directory to write host.crt, ca.crt, config.yml and mesh.id to (required)")
	o.flags(cmd)
	cmd.MarkFlagRequired("token-file")
	cmd.MarkFlagRequired("pub-file")
	cmd.MarkFlagRequired("out")
	return cmd
}

func hostRenewCmd(client func() (*api.Client, error)) *cobra.Command {
	var dir string
	var o hostOptions
	cmd := &cobra.Command{
		Use:   "renew --dir DIR",
		Short: "renew a host's certificate with its key (no token); rewrite host.crt, ca.crt and config.yml",
		Long: `Renews the certificate in DIR (written by meshctl host enrol), proving possession of the
private key config.yml names, and rewrites the files: the manifest's revocations, lighthouses
and firewall reach the host this way. Nebula reads them again on SIGHUP (systemctl reload
nebula; deploy/systemd has a timer for both). A host whose certificate was revoked or has
expired must enrol again.`,
		Example: `  meshctl host renew --dir /etc/nebula && systemctl reload nebula`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			crt, err := os.ReadFile(filepath.Join(dir, hostCert))
			if err != nil {
				return err
			}
			mesh, err := os.ReadFile(filepath.Join(dir, hostMesh))
			if err != nil {
				return err
			}
			cfg, err := readHostConfig(dir)
			if err != nil {
				return err
			}
			pemKey, err := os.ReadFile(cfg.PKI.Key)
			if err != nil {
				return fmt.Errorf("the private key config.yml names: %w", err)
			}
			priv, _, curve, err := cert.UnmarshalPrivateKeyFromPEM(pemKey)
			if err != nil || curve != cert.Curve_CURVE25519 {
				return fmt.Errorf("%s: want a Nebula X25519 private key: %v", cfg.PKI.Key, err)
			}
			key, err := enrol.InMemory(priv)
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			meshID := strings.TrimSpace(string(mesh))
			e, err := enrol.RenewCertificate(cmd.Context(), c.ExpectingMesh(meshID), string(crt), key)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("listen") {
				o.listen = net.JoinHostPort(cfg.Listen.Host, strconv.Itoa(cfg.Listen.Port))
			}
			if !cmd.Flags().Changed("device") {
				o.device = cfg.Tun.Dev
			}
			o.key = cfg.PKI.Key
			if err := writeHost(dir, e, meshID, o); err != nil {
				return err
			}
			return printHost(cmd.OutOrStdout(), "renewed", dir, e)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the host's directory (meshctl host enrol --out) (required)")
	o.flags(cmd)
	cmd.MarkFlagRequired("dir")
	return cmd
}

// hostOptions are the host's local choices for config.yml.
type hostOptions struct {
	device string
	listen string
	key    string
}

func (o *hostOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.device, "device", nebulaconfig.DefaultDevice, "the Nebula interface's name (renew: as config.yml has it)")
	cmd.Flags().StringVar(&o.listen, "listen", ":"+strconv.Itoa(nebulaconfig.DefaultPort), "Nebula's UDP address, host:port; no host: every address (renew: as config.yml has it)")
	cli.RenamePort(cmd.Flags(), "listen-port", "listen")
}

// HostConfig is the configuration stock nebula runs a host with: the
// agent's (nebulaconfig.Config), with the certificate, CA and key in files.
func HostConfig(dir string, e *api.EnrolResponse, device, host string, port int, key string) *nebulaconfig.Nebula {
	n := nebulaconfig.Config(e, nil, nebulaconfig.Options{Device: device, ListenHost: host, ListenPort: port})
	n.PKI.CA, n.PKI.Cert, n.PKI.Key = filepath.Join(dir, hostCA), filepath.Join(dir, hostCert), key
	n.Logging.Format = "text"
	return n
}

// writeHost writes the enrolment's files; each one replaced in one step, the
// certificate last, so that a crash leaves a directory nebula can still run.
func writeHost(dir string, e *api.EnrolResponse, meshID string, o hostOptions) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	host, port, err := cli.ParseListen("listen", o.listen)
	if err != nil {
		return err
	}
	js, err := HostConfig(abs, e, o.device, host, port, o.key).Render()
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	y = append([]byte("# Written by meshctl host enrol/renew from the mesh's manifest; renewal rewrites it.\n"), y...)
	for _, f := range []struct {
		name string
		data []byte
	}{{hostMesh, []byte(meshID + "\n")}, {hostCA, []byte(e.CA)}, {hostConfig, y}, {hostCert, []byte(e.Certificate)}} {
		if err := atomicfile.WriteMode(abs, f.name, f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func readHostConfig(dir string) (*nebulaconfig.Nebula, error) {
	b, err := os.ReadFile(filepath.Join(dir, hostConfig))
	if err != nil {
		return nil, err
	}
	var n nebulaconfig.Nebula
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, hostConfig), err)
	}
	if n.PKI.Key == "" {
		return nil, fmt.Errorf("%s names no pki.key", filepath.Join(dir, hostConfig))
	}
	return &n, nil
}

func printHost(w io.Writer, what, dir string, e *api.EnrolResponse) error {
	_, err := fmt.Fprintf(w, "%s %s: name %s, ip %s, groups %s, until %s; files in %s\n",
		what, e.Role, e.Name, e.IP, strings.Join(e.Groups, ","), e.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), dir)
	return err
}
