package coordinator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

// TestAttestEndpoint: a verifier that does not speak attested TLS asks
// GET /.well-known/sealmesh/attest with its own nonce and checks the
// evidence against the report data it computes from the documented
// formula: it learns the mesh, head, CA and TLS key. Evidence for another
// nonce, or an answer altered on its way, does not verify.
func TestAttestEndpoint(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	st, err := store.OpenFile(p.store)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := p.coordDev.SealingKey()
	tlsKey := []byte("the DER of a TLS public key")
	c, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), Store: st, StateDir: t.TempDir(),
		SealingKey: key, Issuer: p.coordDev, TLSPublicKey: tlsKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	get := func(query string) (*http.Response, *api.AttestResponse) {
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, api.PathAttest+query, nil))
		var r api.AttestResponse
		json.Unmarshal(rec.Body.Bytes(), &r)
		return rec.Result(), &r
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	resp, r := get("?nonce=" + hex.EncodeToString(nonce))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("attest: %s", resp.Status)
	}
	ev := attest.Evidence{Platform: r.Evidence.Platform, Data: r.Evidence.Data}
	claims, err := attest.Verify(ev, api.AttestReportData(nonce, r))
	if err != nil {
		t.Fatalf("the evidence does not verify for this nonce and answer: %v", err)
	}
	info, _ := c.Manifest(ctx)
	if claims.Measurement != hex.EncodeToString(p.coordDev.Measurement[:]) || r.MeshID != p.a.MeshID() || r.Head != info.Head || r.CA != info.CA || !bytes.Equal(r.TLSPublicKey, tlsKey) {
		t.Fatalf("answer %+v, claims %+v", r, claims)
	}

	other := append([]byte(nil), nonce...)
	other[0] ^= 1
	if _, err := attest.Verify(ev, api.AttestReportData(other, r)); err == nil {
		t.Error("the evidence verified for another nonce")
	}
	altered := *r
	altered.Head = strings.Repeat("0", 64) // a head it does not serve
	if _, err := attest.Verify(ev, api.AttestReportData(nonce, &altered)); err == nil {
		t.Error("the evidence verified for an altered head")
	}
	for _, q := range []string{"", "?nonce=zz", "?nonce=" + hex.EncodeToString(nonce[:8])} {
		if resp, _ := get(q); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("attest%s: %s, want 400", q, resp.Status)
		}
	}
}
