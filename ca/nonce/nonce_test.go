package nonce

import (
	"errors"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestCheckAndRedeem(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	i := New(time.Minute, 10, c.now)
	other := New(time.Minute, 10, c.now)
	flip := func(at int) []byte {
		n, _ := i.Issue()
		n[at] ^= 1
		return n
	}
	for _, tc := range []struct {
		name  string
		nonce func() []byte
		want  error
	}{
		{"issued here", func() []byte { n, _ := i.Issue(); return n }, nil},
		{"random part changed", func() []byte { return flip(0) }, ErrUnknown},
		{"expiry changed", func() []byte { return flip(randLen + 3) }, ErrUnknown},
		{"mac changed", func() []byte { return flip(Size - 1) }, ErrUnknown},
		{"short", func() []byte { n, _ := i.Issue(); return n[:Size-1] }, ErrUnknown},
		{"long", func() []byte { n, _ := i.Issue(); return append(n, 0) }, ErrUnknown},
		{"empty", func() []byte { return nil }, ErrUnknown},
		{"another issuer's", func() []byte { n, _ := other.Issue(); return n }, ErrUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.nonce()
			if err := i.Check(n); !errors.Is(err, tc.want) {
				t.Fatalf("Check: %v, want %v", err, tc.want)
			}
			if err := i.Redeem(n); !errors.Is(err, tc.want) {
				t.Fatalf("Redeem: %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				if err := i.Redeem(n); !errors.Is(err, ErrUsed) {
					t.Fatalf("second Redeem: %v, want %v", err, ErrUsed)
				}
			}
		})
	}

	n, exp := i.Issue()
	if !exp.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("expires %s, want %s", exp, c.t.Add(time.Minute))
	}
	c.t = exp
	if err := i.Redeem(n); !errors.Is(err, ErrExpired) {
		t.Fatalf("at its expiry: %v, want %v", err, ErrExpired)
	}
}

// Finding 2 of the attack review: one client asking for nonces as fast as it
// could filled the coordinator's table of 100,000 in seconds and every
// enrolment got 503 for two minutes. Issuing now stores nothing.
func TestFloodStoresNothing(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	i := New(time.Minute, 100, c.now)
	for range 200_000 {
		i.Issue()
	}
	if r := i.Remembered(); r != 0 {
		t.Fatalf("%d nonces held after a flood of issues, want 0", r)
	}
	n, _ := i.Issue()
	if err := i.Redeem(n); err != nil {
		t.Fatalf("after a flood: %v", err)
	}
}

// Redeemed nonces are remembered until they expire, and no longer: a full set
// refuses more until its oldest expire, and a used nonce stays refused as long
// as it could be presented.
func TestRedeemedSetBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	i := New(time.Minute, 3, c.now)
	var used [][]byte
	for range 3 {
		n, _ := i.Issue()
		if err := i.Redeem(n); err != nil {
			t.Fatal(err)
		}
		used = append(used, n)
	}
	late, _ := i.Issue()
	if err := i.Redeem(late); !errors.Is(err, ErrFull) {
		t.Fatalf("with the set full: %v, want %v", err, ErrFull)
	}
	for _, n := range used {
		if err := i.Redeem(n); !errors.Is(err, ErrUsed) {
			t.Fatalf("a used nonce while full: %v, want %v", err, ErrUsed)
		}
	}
	c.t = c.t.Add(time.Minute)
	fresh, _ := i.Issue()
	if err := i.Redeem(fresh); err != nil {
		t.Fatalf("after the first ones expired: %v", err)
	}
	if r := i.Remembered(); r != 1 {
		t.Fatalf("%d remembered, want 1 (expired ones swept)", r)
	}
}

func FuzzRedeem(f *testing.F) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	i := New(time.Minute, 1<<20, c.now)
	n, _ := i.Issue()
	f.Add(n)
	f.Add([]byte{})
	f.Add(make([]byte, Size))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := i.Redeem(b)
		if err == nil && len(b) != Size {
			t.Fatalf("redeemed a %d-byte nonce", len(b))
		}
	})
}
