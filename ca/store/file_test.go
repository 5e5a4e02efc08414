package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
)

func TestFileConformance(t *testing.T) {
	storetest.Conformance(t, func(t *testing.T) store.Store {
		f, err := store.OpenFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f.SetPoll(20 * time.Millisecond)
		return f
	})
}

// Keys are usable in every backend: lower case, digits, '.', '_', '-', at
// most 201 characters, and never the latest pointer's name.
func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"lease-10.42.0.7": true, strings.Repeat("a", 201): true, strings.Repeat("a", 202): false,
		"": false, "-lease": false, "Lease": false, "a/b": false, "a b": false,
	} {
		if got := store.ValidKey(key); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", key, got, want)
		}
	}
}
