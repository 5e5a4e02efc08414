package tools

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
)

// ServeAttested serves h over attested TLS with issuer's evidence until the test
// ends, and returns its URL. Clients that attest reach h with their claims
// (atls.PeerClaims).
func ServeAttested(t testing.TB, issuer attest.Issuer, h http.Handler) string {
	t.Helper()
	s, err := atls.NewServer(issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	s.Configure(srv.Config)
	srv.TLS = s.TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
