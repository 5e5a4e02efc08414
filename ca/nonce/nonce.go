// Package nonce issues single-use nonces that cost the issuer nothing until
// they are redeemed.
//
// A nonce is random ‖ expiry ‖ MAC(key, random ‖ expiry), under a key that
// lives only in this process: issuing one stores nothing, so no number of
// requests for nonces can crowd out anyone else's (a table of outstanding
// nonces filled in seconds and turned every enrolment away for two minutes).
// Only redeemed nonces are remembered, until they expire, so that each is
// honoured once; callers redeem a nonce only once the request it came with
// has been verified, so what is remembered is bounded by verified work.
package nonce

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	randLen = 16
	expLen  = 8
	macLen  = 16
	// Size is the length of every nonce issued.
	Size = randLen + expLen + macLen
)

// Errors Check and Redeem return; every one means "ask for a new nonce".
var (
	ErrUnknown = errors.New("nonce was not issued by this coordinator (or it restarted since); ask for a new one")
	ErrExpired = errors.New("nonce expired; ask for a new one")
	ErrUsed    = errors.New("nonce already used; ask for a new one")
	// ErrFull means too many nonces were redeemed within one lifetime.
	ErrFull = errors.New("too many nonces redeemed recently, retry shortly")
)

// Issuer issues and redeems nonces. The zero value is not usable; call New.
type Issuer struct {
	key  [32]byte
	life time.Duration
	max  int
	now  func() time.Time

	mu sync.Mutex
	// used maps each redeemed nonce's random part to its expiry.
	used map[[randLen]byte]time.Time
	// pruned is when used was last swept; a full set is swept at most once
	// a second, so requests against it stay cheap.
	pruned time.Time
}

// New returns an issuer whose nonces live for life and that remembers at
// most max redeemed nonces at a time.
func New(life time.Duration, max int, now func() time.Time) *Issuer {
	i := &Issuer{life: life, max: max, now: now, used: map[[randLen]byte]time.Time{}}
	rand.Read(i.key[:]) // never fails (crypto/rand)
	return i
}

// Issue returns a fresh nonce and its expiry.
func (i *Issuer) Issue() ([]byte, time.Time) {
	exp := i.now().Add(i.life)
	n := make([]byte, Size)
	rand.Read(n[:randLen])
	binary.BigEndian.PutUint64(n[randLen:], uint64(exp.UnixNano()))
	copy(n[randLen+expLen:], i.mac(n[:randLen+expLen]))
	return n, time.Unix(0, exp.UnixNano())
}

func (i *Issuer) mac(b []byte) []byte {
	m := hmac.New(sha256.New, i.key[:])
	m.Write([]byte("sealmesh nonce v1\x00"))
	m.Write(b)
	return m.Sum(nil)[:macLen]
}

// Check reports whether n was issued here and has not expired, without
// redeeming it. It stores nothing.
func (i *Issuer) Check(n []byte) error {
	_, err := i.check(n)
	return err
}

func (i *Issuer) check(n []byte) (time.Time, error) {
	if len(n) != Size {
		return time.Time{}, fmt.Errorf("%w (%d bytes, want %d)", ErrUnknown, len(n), Size)
	}
	if !hmac.Equal(n[randLen+expLen:], i.mac(n[:randLen+expLen])) {
		return time.Time{}, ErrUnknown
	}
	exp := time.Unix(0, int64(binary.BigEndian.Uint64(n[randLen:])))
	if !exp.After(i.now()) {
		return time.Time{}, ErrExpired
	}
	return exp, nil
}

// Redeem checks n and marks it used; a nonce is redeemed at most once.
func (i *Issuer) Redeem(n []byte) error {
	exp, err := i.check(n)
	if err != nil {
		return err
	}
	id := [randLen]byte(n[:randLen])
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.used[id]; ok {
		return ErrUsed
	}
	if len(i.used) >= i.max && now.Sub(i.pruned) >= time.Second {
		i.pruned = now
		for k, e := range i.used {
			if !e.After(now) {
				delete(i.used, k)
			}
		}
	}
	if len(i.used) >= i.max {
		return ErrFull
	}
	i.used[id] = exp
	return nil
}

// Remembered is how many redeemed nonces are held.
func (i *Issuer) Remembered() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.used)
}
