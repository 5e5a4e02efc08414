package coordinator_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/test/tools"
)

// crasher attests with go-tdx-guest's sample quote whose signed data's size
// says 16 bytes: v0.3.1's parser panics on it.
type crasher struct{}

func (crasher) Platform() string { return attest.PlatformTDX }
func (crasher) Evidence([64]byte) (attest.Evidence, error) {
	q := append([]byte(nil), tdxtestdata.RawQuote...)
	copy(q[0x278:], []byte{16, 0, 0, 0})
	return attest.Evidence{Platform: attest.PlatformTDX, Data: q}, nil
}

// dialLog counts the dials a coordinator makes, per URL.
type dialLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dialLog) dial(url string, p attest.Policy, self attest.Issuer) *api.Client {
	d.mu.Lock()
	d.n[url]++
	d.mu.Unlock()
	return cluster.AttestedDial(url, p, self)
}

func (d *dialLog) count(url string) int { d.mu.Lock(); defer d.mu.Unlock(); return d.n[url] }

// TestGossipIsNotTrusted: anyone who reaches the gossip port can announce a
// member. Before, one announcing "ready" at a higher generation made a ready
// coordinator dial the URL it named within seconds (Recheck), and a server
// there whose TDX evidence crashed go-tdx-guest's parser ended the
// coordinator's process. Now a coordinator with the seed dials only
// announcements vouched for with it; one without (recovering) dials an
// unvouched URL at most once a gate interval, and refuses its evidence
// without crashing.
func TestGossipIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	evil := tools.ServeAttested(t, crasher{}, nil)
	g := &gossip{}
	dials := &dialLog{n: map[string]int{}}
	start := func(stateDir string) *coordinator.Coordinator {
		st, err := store.OpenFile(p.store)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := p.coordDev.SealingKey()
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: stateDir,
			SealingKey: key, Issuer: p.coordDev, Members: g.get, Dial: dials.dial, API: "https://self.invalid"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	b := start(t.TempDir())
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	ahead := api.Member{Name: "evil", API: evil, State: api.StateReady, Generation: 99}
	forged := p.a.Vouched(api.Member{Name: "evil", API: evil, State: api.StateReady, Generation: 1})
	forged.Generation = 99 // a vouched announcement, altered
	for _, m := range []api.Member{ahead, forged} {
		g.set(m)
		b.Recheck(ctx)
		if n := dials.count(evil); n != 0 {
			t.Fatalf("ready coordinator dialed an unvouched gossip URL %d times", n)
		}
		if st := b.Status(); st.State != api.StateReady {
			t.Fatalf("an unvouched announcement moved B: %s: %s", st.State, st.Message)
		}
	}

	// A coordinator without the seed cannot tell; it dials the URL once per
	// gate interval, however often gossip changes, and lives.
	c := start(t.TempDir())
	g.set(ahead)
	for range 20 {
		c.TryPeers(ctx)
	}
	if n := dials.count(evil); n != 1 {
		t.Fatalf("recovering coordinator dialed an unvouched URL %d times in one interval, want 1", n)
	}
	if st := c.Status(); st.State != api.StateRecovering {
		t.Fatalf("after the crasher's evidence: %s: %s", st.State, st.Message)
	}
}
