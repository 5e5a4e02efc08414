package store_test

import (
	"fmt"
	"testing"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
	"github.com/sealmesh/sealmesh/test/tools"
)

func TestEtcdConformance(t *testing.T) {
	endpoint := tools.StartEtcd(t)
	n := 0
	storetest.Conformance(t, func(t *testing.T) store.Store {
		n++ // a fresh prefix per subtest: an empty store on the same etcd
		s, err := store.OpenEtcd([]string{endpoint}, fmt.Sprintf("/sealmesh-test/%d", n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
