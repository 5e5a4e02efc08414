// Package jointoken is the format of sealmesh's join tokens:
//
//	SMTKN-1-<mesh ID>-<secret>
//
// after swarmkit's. The mesh ID (64 hex characters, the hash of the mesh's
// first transition) is public: a joiner checks that the coordinator it
// reached serves that mesh before it sends anything secret. The secret is
// 160 bits from crypto/rand in lower-case base32; only its SHA-256 is ever
// stored (in the manifest). The fixed prefix lets secret scanners find a
// leaked token.
package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every token of this format.
const Prefix = "SMTKN-1-"

// secretBytes is the secret's strength: 160 bits, above the 128 a public
// hash of it must resist offline.
const secretBytes = 20

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// secretLen is the secret's length in characters.
var secretLen = encoding.EncodedLen(secretBytes)

// Token is a parsed join token.
type Token struct {
	MeshID string
	secret string
}

// ErrMalformed is every parse failure; its message never holds the input.
var ErrMalformed = errors.New("join token malformed")

// New makes a token for the mesh meshID with a fresh secret.
func New(meshID string) (Token, error) {
	if !isMeshID(meshID) {
		return Token{}, fmt.Errorf("jointoken: mesh ID %q: want 64 lower-case hex characters", meshID)
	}
	b := make([]byte, secretBytes)
	rand.Read(b) // never fails (crypto/rand)
	return Token{MeshID: meshID, secret: encoding.EncodeToString(b)}, nil
}

// Parse reads a token; surrounding white space (a file's newline) is ignored.
// Its errors say what is wrong without repeating the token.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, Prefix) {
		return Token{}, fmt.Errorf("%w: it does not start with %s (make one with meshctl token create)", ErrMalformed, Prefix)
	}
	mesh, secret, ok := strings.Cut(strings.TrimPrefix(s, Prefix), "-")
	if !ok || !isMeshID(mesh) {
		return Token{}, fmt.Errorf("%w: want %s<64 hex characters of mesh ID>-<secret>", ErrMalformed, Prefix)
	}
	if len(secret) != secretLen {
		return Token{}, fmt.Errorf("%w: its secret is %d characters, want %d", ErrMalformed, len(secret), secretLen)
	}
	if _, err := encoding.DecodeString(secret); err != nil {
		return Token{}, fmt.Errorf("%w: its secret is not lower-case base32", ErrMalformed)
	}
	return Token{MeshID: mesh, secret: secret}, nil
}

// String is the token as it is handed to a joiner.
func (t Token) String() string { return Prefix + t.MeshID + "-" + t.secret }

// Hash is the hex SHA-256 of the secret: what the manifest keeps.
func (t Token) Hash() string {
	sum := sha256.Sum256([]byte(t.secret))
	return hex.EncodeToString(sum[:])
}

// IDOf is a token's public name, from its hash: what meshctl token list and
// revoke show and take, and what logs name.
func IDOf(hash string) string {
	if len(hash) < 12 {
		return hash
	}
	return hash[:12]
}

// Matches reports, in time independent of where they differ, whether hash
// (64 hex characters) is this token's.
func (t Token) Matches(hash string) bool {
	return subtle.ConstantTimeCompare([]byte(t.Hash()), []byte(hash)) == 1
}

// GoString keeps the secret out of %#v.
func (t Token) GoString() string {
	return "jointoken.Token{MeshID: " + t.MeshID + ", secret: <hidden>}"
}

// Format keeps the secret out of %v and %+v; String is the way to print it.
func (t Token) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "%s%s-<secret %s>", Prefix, t.MeshID, IDOf(t.Hash()))
}

func isMeshID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// For is the same secret as a token of the mesh meshID: a token whose hash
// went into a mesh's first manifest, before the mesh had an ID, is given
// to joiners with the ID the mesh got.
func (t Token) For(meshID string) (Token, error) {
	if !isMeshID(meshID) {
		return Token{}, fmt.Errorf("jointoken: mesh ID %q: want 64 lower-case hex characters", meshID)
	}
	return Token{MeshID: meshID, secret: t.secret}, nil
}
