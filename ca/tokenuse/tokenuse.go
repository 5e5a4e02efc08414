// Package tokenuse counts the keys that joined with each join token, in the
// store, so that a token limited to N uses admits N keys across every
// coordinator. A key that joined once may join again with the same token
// (a retry after a lost answer) without using it up.
//
// The store is untrusted: deleting a record gives its uses back. That costs
// an attacker who can write to the store and holds the token nothing it did
// not have (it could enrol with the token before it was spent); what it
// cannot do is make a coordinator issue to a key without the token.
package tokenuse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/sealmesh/sealmesh/ca/store"
)

// ErrSpent is returned when a token's uses are all taken by other keys.
var ErrSpent = errors.New("join token used up")

// maxTries bounds compare-and-swap retries under contention.
const maxTries = 32

// record is one token's uses.
type record struct {
	Holders []string `json:"holders"`
}

func key(id string) string { return "tokenuse-" + id }

// Take records that holder joins with token id, allowed uses distinct keys
// (0: any number, and nothing is recorded).
func Take(ctx context.Context, st store.Store, id, holder string, uses int) error {
	if uses <= 0 {
		return nil
	}
	for range maxTries {
		b, v, err := st.GetVersion(ctx, key(id))
		var r record
		switch {
		case errors.Is(err, store.ErrNotFound):
			v = ""
		case err != nil:
			return fmt.Errorf("tokenuse: %w", err)
		default:
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("tokenuse: record %s is corrupt: %w", key(id), err)
			}
		}
		if slices.Contains(r.Holders, holder) {
			return nil
		}
		if len(r.Holders) >= uses {
			return fmt.Errorf("%w: token %s admitted %d keys, its limit", ErrSpent, id, len(r.Holders))
		}
		r.Holders = append(r.Holders, holder)
		nb, _ := json.Marshal(r)
		_, err = st.Swap(ctx, key(id), v, nb)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("tokenuse: %w", err)
		}
		return nil
	}
	return fmt.Errorf("tokenuse: token %s: the record kept changing", id)
}

// Count returns how many keys joined with token id (for meshctl token list).
func Count(ctx context.Context, st store.Store) (map[string]int, error) {
	recs, err := st.List(ctx, "tokenuse-")
	if err != nil {
		return nil, fmt.Errorf("tokenuse: %w", err)
	}
	out := make(map[string]int, len(recs))
	for k, b := range recs {
		var r record
		if json.Unmarshal(b, &r) == nil {
			out[k[len("tokenuse-"):]] = len(r.Holders)
		}
	}
	return out, nil
}
