// Package seal keeps secrets at rest encrypted (invariant E), as swarm's autolock
// does: the secret is sealed with AES-256-GCM under a random data key, and the
// data key is wrapped by a key-encryption key (KEK) that never touches the disk: an
// unlock key the operator holds, or a key the TEE derives for this measurement.
// Rotating the KEK rewraps the data key in one atomic file replacement, so a crash
// leaves a file that the old or the new KEK opens.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// ErrWrongKey means the KEK does not open the sealed blob.
var ErrWrongKey = errors.New("seal: the key does not open this state")

// KEK is a key-encryption key.
type KEK struct {
	id  string // names the key without revealing it
	key [32]byte
}

// ID names the key: its kind and a short fingerprint.
func (k *KEK) ID() string { return k.id }

// NewKEK wraps raw key material (32 bytes) of the given kind ("unlock-key", "tee").
func NewKEK(kind string, key []byte) (*KEK, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: %s is %d bytes, want 32", kind, len(key))
	}
	k := &KEK{}
	copy(k.key[:], key)
	fp := sha256.Sum256(append([]byte("sealmesh kek id\x00"), key...))
	k.id = kind + ":" + hex.EncodeToString(fp[:4])
	return k, nil
}

const unlockPrefix = "SMUK1-"

// NewUnlockKey makes a fresh unlock key and its text form, which the operator
// keeps (it is shown once).
func NewUnlockKey() (*KEK, string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", err
	}
	k, err := NewKEK("unlock-key", b[:])
	return k, unlockPrefix + base64.RawURLEncoding.EncodeToString(b[:]), err
}

// ParseUnlockKey reads the text form of an unlock key.
func ParseUnlockKey(s string) (*KEK, error) {
	s = strings.TrimSpace(s)
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, unlockPrefix))
	if !strings.HasPrefix(s, unlockPrefix) || err != nil || len(b) != 32 {
		return nil, errors.New("seal: not an unlock key (want SMUK1-<43 characters>)")
	}
	return NewKEK("unlock-key", b)
}

// blob is a sealed secret as stored.
type blob struct {
	Version    int    `json:"version"`
	KEK        string `json:"kek"`
	WrappedKey []byte `json:"wrappedKey"`
	Ciphertext []byte `json:"ciphertext"`
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal encrypts pt under key with a random nonce, prefixed.
func sealWith(key []byte, pt, ad []byte) ([]byte, error) {
	a, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, pt, ad), nil
}

func openWith(key []byte, ct, ad []byte) ([]byte, error) {
	a, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(ct) < a.NonceSize() {
		return nil, errors.New("short ciphertext")
	}
	return a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], ad)
}

// Seal encrypts payload under a fresh data key wrapped by kek.
func Seal(payload []byte, kek *KEK) ([]byte, error) {
	dk := make([]byte, 32)
	if _, err := rand.Read(dk); err != nil {
		return nil, err
	}
	return sealData(payload, dk, kek)
}

func sealData(payload, dk []byte, kek *KEK) ([]byte, error) {
	wrapped, err := sealWith(kek.key[:], dk, []byte("sealmesh data key v1\x00"+kek.id))
	if err != nil {
		return nil, fmt.Errorf("seal: wrap: %w", err)
	}
	ct, err := sealWith(dk, payload, []byte("sealmesh sealed v1"))
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return json.Marshal(blob{Version: 1, KEK: kek.id, WrappedKey: wrapped, Ciphertext: ct})
}

func unwrap(sealed []byte, kek *KEK) (*blob, []byte, error) {
	var b blob
	if err := json.Unmarshal(sealed, &b); err != nil || b.Version != 1 {
		return nil, nil, errors.New("seal: not a sealed state (corrupt or of another version)")
	}
	if b.KEK != kek.id {
		return nil, nil, fmt.Errorf("%w: it is sealed with %s, this is %s", ErrWrongKey, b.KEK, kek.id)
	}
	dk, err := openWith(kek.key[:], b.WrappedKey, []byte("sealmesh data key v1\x00"+kek.id))
	if err != nil {
		return nil, nil, ErrWrongKey
	}
	return &b, dk, nil
}

// Open decrypts a blob made by Seal.
func Open(sealed []byte, kek *KEK) ([]byte, error) {
	b, dk, err := unwrap(sealed, kek)
	if err != nil {
		return nil, err
	}
	pt, err := openWith(dk, b.Ciphertext, []byte("sealmesh sealed v1"))
	if err != nil {
		return nil, errors.New("seal: sealed state is corrupt")
	}
	return pt, nil
}

// KEKOf names the KEK a blob is sealed with.
func KEKOf(sealed []byte) string {
	var b blob
	json.Unmarshal(sealed, &b)
	return b.KEK
}

// Rewrap re-seals under newKEK what oldKEK opens.
func Rewrap(sealed []byte, oldKEK, newKEK *KEK) ([]byte, error) {
	pt, err := Open(sealed, oldKEK)
	if err != nil {
		return nil, err
	}
	return Seal(pt, newKEK)
}

// WriteFile seals payload under kek into dir/name.
func WriteFile(dir, name string, payload []byte, kek *KEK) error {
	b, err := Seal(payload, kek)
	if err != nil {
		return err
	}
	return atomicfile.Write(dir, name, b)
}

// ReadFile opens dir/name with kek.
func ReadFile(dir, name string, kek *KEK) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return Open(b, kek)
}

// RotateFile moves dir/name from oldKEK to newKEK in one atomic replacement.
func RotateFile(dir, name string, oldKEK, newKEK *KEK) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	nb, err := Rewrap(b, oldKEK, newKEK)
	if err != nil {
		return err
	}
	return atomicfile.Write(dir, name, nb)
}
