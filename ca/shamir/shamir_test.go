package shamir

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

var seed = []byte("0123456789abcdef0123456789abcdef")

// TestAnyKOfN: every set of k shares of a 3-of-5 sharing joins to the
// seed; k-1 do not, nor k-1 with one repeated.
func TestAnyKOfN(t *testing.T) {
	shares, p, err := Split(seed, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		for j := i + 1; j < 5; j++ {
			for k := j + 1; k < 5; k++ {
				got, err := Join([][]byte{shares[i], shares[j], shares[k]}, p)
				if err != nil || !bytes.Equal(got, seed) {
					t.Fatalf("shares %d,%d,%d: %x, %v", i+1, j+1, k+1, got, err)
				}
			}
		}
	}
	for _, few := range [][][]byte{{shares[0], shares[1]}, {shares[2], shares[2], shares[4]}} {
		if _, err := Join(few, p); err == nil || !strings.Contains(err.Error(), "3 needed") {
			t.Fatalf("too few distinct shares: %v", err)
		}
	}
	for i, s := range shares {
		if id, err := Check(s, p); err != nil || id != uint64(i+1) {
			t.Fatalf("Check(share %d) = %d, %v", i+1, id, err)
		}
	}
}

// TestCorruptShare: a share with one bit flipped, or one of another
// sharing, is named, not joined into a wrong seed.
func TestCorruptShare(t *testing.T) {
	shares, p, err := Split(seed, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(shares[1])
	bad[len(bad)-5] ^= 1
	other, _, _ := Split(seed, 2, 3)
	for name, s := range map[string][]byte{"a flipped bit": bad, "another sharing's": other[1]} {
		if _, err := Check(s, p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Check(%s) = %v, want ErrCorrupt", name, err)
		}
		if _, err := Join([][]byte{shares[0], s}, p); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "share 2 (ID 2)") {
			t.Errorf("Join with %s: %v, want ErrCorrupt naming share 2", name, err)
		}
	}
	if _, err := Check(seed, p); err == nil || IsShare(seed) {
		t.Error("a whole seed was taken for a share")
	}
}

// TestKnownAnswer: shares written by this package at a mesh's creation
// (here, a 2-of-3 sharing made once and kept) join the same way in every
// later version: the encoding, the wrap and circl's sharing are fixed.
func TestKnownAnswer(t *testing.T) {
	hx := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	shares := [][]byte{
		hx("534d534841524531010000000000000000000000000000000000000000000000000000000000000012be2e280765930942ba65ec011f147c7d5bf444fff7287a9356b57cb748e20c"),
		hx("534d53484152453102000000000000000000000000000000000000000000000000000000000000009987e6c05224e9e4e369d87b0ee90b96db9fe290f8f5021c211e966fee182305"),
		hx("534d53484152453103000000000000000000000000000000000000000000000000000000000000000d2594b6b84651185cb642aef9ace2c439e4d0dcf1f3dcbdaee5766225e9630d"),
	}
	p := Public{Threshold: 2,
		Commitment: hx("44a146920386b3fa37a0b70e144e49a0ac27f476bc57c99500e459714a147e7e36dcb5748da5eb6241a4e7dc122ea207feb5e9a2251cc1be14634b0d3b4a9d2a"),
		Wrapped:    hx("125232e8b0aa88b374d47813c5c503e680efb958057c5ddedf77b88780154a7e59afe3938be6654bc8fb6a753298a8b8d5bcb875d5839c1fb3dfe52b")}
	for _, pair := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
		got, err := Join([][]byte{shares[pair[0]], shares[pair[1]]}, p)
		if err != nil || !bytes.Equal(got, seed) {
			t.Fatalf("shares %v: %q, %v", pair, got, err)
		}
	}
}

func TestSplitRefusesBadThresholds(t *testing.T) {
	for _, kn := range [][2]int{{1, 3}, {4, 3}, {0, 0}} {
		if _, _, err := Split(seed, kn[0], kn[1]); err == nil {
			t.Errorf("Split(k=%d, n=%d) accepted", kn[0], kn[1])
		}
	}
}
