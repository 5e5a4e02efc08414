package jointoken

import (
	"fmt"
	"strings"
	"testing"
)

var mesh = strings.Repeat("ab", 32)

func TestRoundTrip(t *testing.T) {
	tok, err := New(mesh)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, Prefix+mesh+"-") {
		t.Fatalf("token %q does not start with the prefix and mesh ID", s)
	}
	got, err := Parse(" " + s + "\n") // as read from a file
	if err != nil {
		t.Fatal(err)
	}
	if got != tok || !got.Matches(tok.Hash()) {
		t.Fatal("the parsed token differs")
	}
	other, _ := New(mesh)
	if other.Matches(tok.Hash()) || other.Hash() == tok.Hash() {
		t.Fatal("two new tokens share a secret")
	}
	moved, err := tok.For(strings.Repeat("cd", 32))
	if err != nil || moved.Hash() != tok.Hash() || moved.MeshID == tok.MeshID {
		t.Fatalf("For: %v %v", moved, err)
	}
}

// TestPrintingHidesTheSecret: only String gives the secret out; %v, %s,
// %+v and %#v, as a log or an error would print a token, do not.
func TestPrintingHidesTheSecret(t *testing.T) {
	tok, _ := New(mesh)
	secret := tok.String()[len(Prefix)+len(mesh)+1:]
	for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q"} {
		if out := fmt.Sprintf(verb, tok); strings.Contains(out, secret) {
			t.Errorf("%s prints the secret: %s", verb, out)
		}
		if out := fmt.Sprintf(verb, struct{ T Token }{tok}); strings.Contains(out, secret) {
			t.Errorf("%s of a struct holding it prints the secret: %s", verb, out)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good, _ := New(mesh)
	secret := good.String()[len(Prefix)+len(mesh)+1:]
	for _, tt := range []struct{ name, in, want string }{
		{"no prefix", "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "does not start with SMTKN-1-"},
		{"other version", "SMTKN-2-" + mesh + "-" + secret, "does not start with SMTKN-1-"},
		{"short mesh ID", Prefix + mesh[2:] + "-" + secret, "mesh ID"},
		{"upper-case mesh ID", Prefix + strings.ToUpper(mesh) + "-" + secret, "mesh ID"},
		{"short secret", Prefix + mesh + "-" + secret[1:], "secret is 31 characters"},
		{"not base32", Prefix + mesh + "-" + strings.Repeat("1", len(secret)), "not lower-case base32"},
		{"no secret", Prefix + mesh, "mesh ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want %q", err, tt.want)
			}
			if len(tt.in) > 20 && strings.Contains(err.Error(), tt.in[len(tt.in)-20:]) {
				t.Fatalf("the error repeats the input: %v", err)
			}
		})
	}
}
