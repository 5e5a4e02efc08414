package store_test

import (
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
