package issuer_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/issuer"
)

// BenchmarkSign is one Nebula host certificate signed by the mesh CA.
func BenchmarkSign(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	ca, err := issuer.NewCA(key, "bench", []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")}, time.Hour, now)
	if err != nil {
		b.Fatal(err)
	}
	pub := make([]byte, 32)
	rand.Read(pub)
	h := issuer.Host{Name: "web-10-42-0-2", Networks: []netip.Prefix{netip.MustParsePrefix("10.42.0.2/16")}, Groups: []string{"web"}, PublicKey: pub, NotAfter: now.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Sign(h, now); err != nil {
			b.Fatal(err)
		}
	}
}
