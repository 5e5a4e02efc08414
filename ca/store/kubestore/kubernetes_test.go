package kubestore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/kubestore"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
	"github.com/sealmesh/sealmesh/test/tools"
)

// TestKubernetesConformance runs the suite against a real kube-apiserver (and
// its etcd) on loopback, not a fake.
func TestKubernetesConformance(t *testing.T) {
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "sealmesh")
	n := 0
	storetest.Conformance(t, func(t *testing.T) store.Store {
		n++ // a fresh store name per subtest: an empty store in the same namespace
		s, err := kubestore.Open(cfg, "sealmesh", fmt.Sprintf("sm%d", n))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// interleave lets another writer in just before the nth write (POST or PUT)
// this store's client sends after it is armed, as a coordinator racing this
// one would.
type interleave struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	n     int
	other func() error
	err   error
}

func (i *interleave) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost || req.Method == http.MethodPut {
		i.mu.Lock()
		if i.n--; i.n == 0 && i.other != nil {
			i.err = i.other()
		}
		i.mu.Unlock()
	}
	return i.rt.RoundTrip(req)
}

func (i *interleave) arm(n int, other func() error) {
	i.mu.Lock()
	i.n, i.other, i.err = n, other, nil
	i.mu.Unlock()
}

// TestKubernetesSwapPutBack: ConfigMaps have no transaction across objects,
// so Swap writes its key, then the records with it, and puts the key back
// when another writer took one of those records in between. The other
// writer's records stay as it wrote them, and a key it wrote since is not
// put back over.
func TestKubernetesSwapPutBack(t *testing.T) {
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "sealmesh")
	ctx := context.Background()
	for n, c := range []struct {
		name string
		// existed: the key had a value before the swap.
		existed bool
		// at: which of the swap's writes the other writer goes before
		// (1: the key's, 2: the record's).
		at int
		// rewrites: the other writer also writes the key, after the
		// swap wrote it.
		rewrites bool
		want     string // the key's value after ("" for none)
	}{
		{name: "new key put back", at: 1},
		{name: "existing key put back", existed: true, at: 1, want: "before"},
		{name: "new key written since is left", at: 2, rewrites: true, want: "theirs"},
		{name: "existing key written since is left", existed: true, at: 2, rewrites: true, want: "theirs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("putback%d", n)
			hook := &interleave{}
			mine := rest.CopyConfig(cfg)
			mine.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { hook.rt = rt; return hook }
			s, err := kubestore.Open(mine, "sealmesh", name)
			if err != nil {
				t.Fatal(err)
			}
			other, err := kubestore.Open(cfg, "sealmesh", name)
			if err != nil {
				t.Fatal(err)
			}
			var old store.Version
			if c.existed {
				if old, err = s.Swap(ctx, "lease-a", "", []byte("before")); err != nil {
					t.Fatal(err)
				}
			}
			hook.arm(c.at, func() error {
				if c.rewrites {
					_, v, err := other.GetVersion(ctx, "lease-a")
					if err != nil {
						return err
					}
					if _, err := other.Swap(ctx, "lease-a", v, []byte("theirs")); err != nil {
						return err
					}
				}
				_, err := other.Swap(ctx, "holder-x", "", []byte("theirs"))
				return err
			})
			_, err = s.Swap(ctx, "lease-a", old, []byte("mine"), store.Record{Key: "holder-x", Value: []byte("mine")})
			if hook.err != nil {
				t.Fatalf("the other writer: %v", hook.err)
			}
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Swap with its record taken meanwhile: %v, want ErrConflict", err)
			}
			got, err := other.Get(ctx, "lease-a")
			switch {
			case c.want == "" && !errors.Is(err, store.ErrNotFound):
				t.Errorf("the key after: %q, %v; want none", got, err)
			case c.want != "" && (err != nil || string(got) != c.want):
				t.Errorf("the key after: %q, %v; want %q", got, err, c.want)
			}
			if got, err := other.Get(ctx, "holder-x"); err != nil || string(got) != "theirs" {
				t.Errorf("the other writer's record: %q, %v; want %q", got, err, "theirs")
			}
		})
	}
}
