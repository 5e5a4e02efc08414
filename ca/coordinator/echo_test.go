package coordinator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/jointoken"
)

// TestRefusalsDoNotEchoSecrets: a refused join token or release token, and
// the real ones used rightly, appear in no error body and no log line.
func TestRefusalsDoNotEchoSecrets(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	guess := func() string { b := make([]byte, 16); rand.Read(b); return "guess-" + hex.EncodeToString(b) }
	var said []string

	n, err := h.client.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	priv := make([]byte, 32)
	rand.Read(priv)
	req := proven(t, n, priv)
	wrong, err := jointoken.New(h.c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	badToken := wrong.String()
	req.JoinToken = badToken
	_, err = h.client.Enrol(ctx, req)
	if err == nil {
		t.Fatal("a wrong join token enrolled")
	}
	said = append(said, err.Error())

	lh, err := enrol.Join(ctx, h.client, lighthouseToken(t, h))
	if err != nil {
		t.Fatal(err)
	}
	badRelease := guess()
	err = h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fingerprint(t, lh), ReleaseToken: badRelease, IP: lh.IP})
	if err == nil {
		t.Fatal("a wrong release token released")
	}
	said = append(said, err.Error())
	if err := h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fingerprint(t, lh), ReleaseToken: lh.ReleaseToken, IP: lh.IP}); err != nil {
		t.Fatal(err)
	}
	said = append(said, h.logs.String())

	for name, secret := range map[string]string{"wrong join token": secretOf(badToken), "join token": secretOf(lighthouseToken(t, h)), "wrong release token": badRelease, "release token": lh.ReleaseToken} {
		for _, s := range said {
			if strings.Contains(s, secret) {
				t.Errorf("the %s appears in %q", name, s)
			}
		}
	}
}

// secretOf is a join token's secret part, which no answer or log may hold
// (the mesh ID before it is public).
func secretOf(token string) string { return token[strings.LastIndex(token, "-")+1:] }
