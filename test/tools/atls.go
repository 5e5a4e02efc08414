package tools

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
)

// ServeAttested serves h over attested TLS with issuer's evidence until the test
// ends, and returns its URL.
func ServeAttested(t testing.TB, issuer attest.Issuer, h http.Handler) string {
	t.Helper()
	cfg, err := atls.Server(issuer)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
