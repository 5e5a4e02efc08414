package ha

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
)

// TestCARotationKill: a coordinator killed with SIGKILL right after the
// first step of a CA rotation leaves a consistent cluster: the others serve
// the new CA with both trusted, the killed one comes back from its sealed
// state to the same, and the second step, taken at another coordinator,
// reaches all three.
func TestCARotationKill(t *testing.T) {
	ctx := context.Background()
	l := newLab(t, 3)
	for i := range 3 {
		l.start(i, l.state(i))
	}
	if err := l.wait(func() error { return l.get("http://" + ip(0) + ":7081/healthz") }, "c1 up"); err != nil {
		t.Fatal(err)
	}
	created := l.create()
	for i := range 3 {
		l.waitReady(t, i)
	}
	step := func(at int, ca map[string]any) *api.ManifestResponse {
		t.Helper()
		st, err := l.status(at)
		if err != nil {
			t.Fatal(err)
		}
		req, err := l.manifestRequestWith("1h", st.Head, map[string]any{"ca": ca})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := l.client(apiURL(at)).SetManifest(cctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// trust enrols at coordinator i and returns how many CAs the answer
	// trusts and the CA its certificate is under.
	trust := func(i int) (int, string) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		e, err := enrol.Workload(cctx, l.client(apiURL(i)), l.workload, api.Workload{})
		if err != nil {
			t.Fatalf("enrolment at c%d: %v", i+1, err)
		}
		pool, err := cert.NewCAPoolFromPEM([]byte(e.CA))
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		return len(pool.CAs), c.Issuer()
	}

	rotated := step(0, map[string]any{"generation": 2, "trustPrevious": true})
	ca2 := rotated.Status.CAFingerprint
	if ca2 == created.Status.CAFingerprint {
		t.Fatal("the first step kept the CA")
	}
	l.kill(0)
	for _, i := range []int{1, 2} {
		if err := l.wait(func() error {
			if n, issuer := trust(i); n != 2 || issuer != ca2 {
				return errNotYet
			}
			return nil
		}, "the others serve the new CA with both trusted"); err != nil {
			t.Fatalf("c%d: %v", i+1, err)
		}
	}
	l.start(0, l.state(0))
	l.waitReady(t, 0)
	if n, issuer := trust(0); n != 2 || issuer != ca2 {
		t.Fatalf("c1 after kill -9 and restart: %d CAs trusted, issuing under %s; want 2 and %s", n, issuer, ca2)
	}

	step(1, map[string]any{"generation": 2})
	for i := range 3 {
		if err := l.wait(func() error {
			if n, issuer := trust(i); n != 1 || issuer != ca2 {
				return errNotYet
			}
			return nil
		}, "the new CA alone"); err != nil {
			t.Fatalf("c%d after --finish: %v", i+1, err)
		}
	}
}

// errNotYet: a condition l.wait polls for does not hold yet.
var errNotYet = errors.New("not yet")
