// Package cli holds the conventions every sealmesh command line shares: the
// -o/--output flag and its printing, and --version with a version
// subcommand, so that each binary behaves as kubectl and cilium users expect.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/internal/buildinfo"
)

// Output is an -o/--output value: table (for people), json or yaml. Set
// refuses anything else, so a typo fails at parse time instead of printing
// the table.
type Output string

// The output formats.
const (
	Table Output = "table"
	JSON  Output = "json"
	YAML  Output = "yaml"
)

// String implements pflag.Value.
func (o *Output) String() string { return string(*o) }

// Type implements pflag.Value.
func (o *Output) Type() string { return "format" }

// Set implements pflag.Value.
func (o *Output) Set(s string) error {
	switch Output(s) {
	case Table, JSON, YAML:
		*o = Output(s)
		return nil
	}
	return fmt.Errorf("want table, json or yaml")
}

// AddOutput adds -o/--output to cmd, table by default.
func AddOutput(cmd *cobra.Command, o *Output) {
	*o = Table
	cmd.Flags().VarP(o, "output", "o", "output format: table, json or yaml")
}

// Print writes v as o says: table with the given function, json indented,
// yaml through its JSON form (so both name fields alike).
func (o Output) Print(w io.Writer, v any, table func(io.Writer) error) error {
	switch o {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return table(w)
}

// AddVersion gives root --version and a version subcommand (with -o),
// both reporting the binary's build.
func AddVersion(root *cobra.Command, version string) {
	in := buildinfo.Get(version)
	// cobra prints "<name> version <Version>"; the rest of the build rides
	// in Version's further lines. (SetVersionTemplate would link
	// text/template, whose reflection keeps every method in the binary:
	// 5 MB more for meshctl.)
	text := versionText(root.Name(), in)
	root.Version = strings.TrimSuffix(strings.TrimPrefix(text, root.Name()+" version "), "\n")
	var out Output
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "print the version, commit, Go and Nebula versions of this binary",
		Args:    cobra.NoArgs,
		Example: "  " + root.Name() + " version\n  " + root.Name() + " version -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return out.Print(cmd.OutOrStdout(), in, func(w io.Writer) error {
				_, err := io.WriteString(w, text)
				return err
			})
		},
	}
	AddOutput(cmd, &out)
	root.AddCommand(cmd)
}

func versionText(name string, in buildinfo.Info) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s version %s\n", name, in.Version)
	for _, kv := range [][2]string{{"commit", in.Commit}, {"go", in.Go}, {"nebula", in.Nebula}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "  %-7s %s\n", kv[0]+":", kv[1])
		}
	}
	return b.String()
}

// Group makes cmd a command that only holds others: alone it prints its
// help; with a word that names none of them it fails, as a leaf command
// given a stray word does, instead of printing help with exit 0.
func Group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[groupAnnotation] = "true"
	return cmd
}

const groupAnnotation = "sealmesh.io/group"

// IsGroup reports whether cmd was made with Group.
func IsGroup(cmd *cobra.Command) bool { return cmd.Annotations[groupAnnotation] == "true" }

// Walk calls fn for cmd and every command below it.
func Walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		Walk(c, fn)
	}
}

// Rename keeps old working as a deprecated spelling of the flag now called
// name (already defined in fs): hidden from help, it sets the same value and
// warns "Flag --old has been deprecated, use --name" on use. Old spellings
// are kept for one release.
func Rename(fs *pflag.FlagSet, old, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("cli.Rename: no flag --" + name)
	}
	fs.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: alias{fs, f}, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal})
	if err := fs.MarkDeprecated(old, "use --"+name); err != nil {
		panic(err)
	}
}

// alias sets the flag it stands for through the flag set, so that the flag
// counts as given (required-flag checks and Changed see it).
type alias struct {
	fs *pflag.FlagSet
	f  *pflag.Flag
}

func (a alias) String() string     { return a.f.Value.String() }
func (a alias) Type() string       { return a.f.Value.Type() }
func (a alias) Set(s string) error { return a.fs.Set(a.f.Name, s) }

// RenamePort keeps old, a port-only flag (--listen-port 4242), working as a
// deprecated spelling of the host:port flag name (--listen :4242), as
// Rename does for a flag of the same type.
func RenamePort(fs *pflag.FlagSet, old, name string) {
	fs.AddFlag(&pflag.Flag{Name: old, Usage: "a port", Value: portAlias{fs, name}})
	if err := fs.MarkDeprecated(old, "use --"+name+" :PORT"); err != nil {
		panic(err)
	}
}

type portAlias struct {
	fs   *pflag.FlagSet
	name string
}

func (a portAlias) String() string { return "" }
func (a portAlias) Type() string   { return "int" }
func (a portAlias) Set(s string) error {
	if _, err := strconv.Atoi(s); err != nil {
		return errors.New("want a port number")
	}
	return a.fs.Set(a.name, ":"+s)
}

// ParseListen reads a --listen value, host:port, where an empty host means
// every address.
func ParseListen(flag, s string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(s)
	if err == nil {
		port, err = strconv.Atoi(p)
	}
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("--%s %q: want host:port, e.g. :4242 for every address", flag, s)
	}
	if h != "" && net.ParseIP(h) == nil {
		return "", 0, fmt.Errorf("--%s %q: want an IP address as the host", flag, s)
	}
	return h, port, nil
}
