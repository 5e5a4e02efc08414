package kbs

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestProtocolDocMatchesRoutes: docs/protocol.md's KBS table names exactly
// the routes served.
func TestProtocolDocMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `((?:GET|POST) /kbs/[^`?]+)").FindAllStringSubmatch(string(raw), -1) {
		documented = append(documented, m[1])
	}
	served := slices.Clone(Routes)
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("docs/protocol.md documents %v, the server serves %v", documented, served)
	}
}

// TestCanonical: the runtime data is hashed as serde_json writes a Value:
// keys sorted at every level, no spaces, no HTML escaping, numbers as sent.
func TestCanonical(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"tee-pubkey": {"y": "b", "x": "a", "kty": "EC"}, "nonce": "n<&>"}`, `{"nonce":"n<&>","tee-pubkey":{"kty":"EC","x":"a","y":"b"}}`},
		{`{"b": 1.50, "a": [3, 2]}`, `{"a":[3,2],"b":1.50}`},
	} {
		got, err := Canonical([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

// TestBytesAreNumberArrays: the credential's bytes go over the wire as
// trustee's serde writes Vec<u8>, and come back.
func TestBytesAreNumberArrays(t *testing.T) {
	b, err := json.Marshal(Credential{NodeCrt: Bytes("AB"), CACrt: Bytes{}})
	if err != nil || !strings.Contains(string(b), `"node_crt":[65,66]`) || !strings.Contains(string(b), `"ca_crt":[]`) {
		t.Fatalf("%s %v", b, err)
	}
	var c Credential
	if err := json.Unmarshal(b, &c); err != nil || string(c.NodeCrt) != "AB" {
		t.Fatalf("%+v %v", c, err)
	}
	if err := json.Unmarshal([]byte(`{"node_crt":[256]}`), &c); err == nil {
		t.Fatal("a byte of 256 decoded")
	}
}
