package cli

import (
	"io"
	"testing"

	"github.com/spf13/pflag"
)

// Old spellings set the new flag and count as given (required-flag checks
// and Changed look at the new name); a port-only one becomes :PORT.
func TestRenamedFlags(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		owner, laddr string
	}{
		{[]string{"--key", "a.key", "--listen-port", "4343"}, "a.key", ":4343"},
		{[]string{"--owner-key", "b.key", "--listen", "10.0.0.1:53"}, "b.key", "10.0.0.1:53"},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var owner, listen string
		fs.StringVar(&owner, "owner-key", "", "")
		fs.StringVar(&listen, "listen", ":4242", "")
		Rename(fs, "key", "owner-key")
		RenamePort(fs, "listen-port", "listen")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if owner != tc.owner || listen != tc.laddr || !fs.Changed("owner-key") || !fs.Changed("listen") {
			t.Errorf("%v: owner-key %q listen %q (changed %v %v)", tc.args, owner, listen, fs.Changed("owner-key"), fs.Changed("listen"))
		}
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("listen", ":4242", "")
	RenamePort(fs, "listen-port", "listen")
	if err := fs.Parse([]string{"--listen-port", "x"}); err == nil {
		t.Error("--listen-port x accepted")
	}
}
