package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
)

// TestExpectedHeadPin (invariant H's time-of-check/time-of-use gap): a
// client that verified head H sends it with every request; after a
// concurrent manifest change, its manifest update, revocation, enrolment
// and release are answered 412 naming both heads, and nothing changes:
// the store's head, the leases and the revoked list are as they were.
func TestExpectedHeadPin(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	h.create(t, testManifest(webDev.RootFingerprint()))
	verified := h.c.Status().Head
	pinned := h.client.ExpectingHead(verified)

	e, err := enrol.Workload(ctx, pinned, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatalf("pinned enrolment at the verified head: %v", err)
	}

	// Someone else changes the manifest meanwhile.
	var m map[string]any
	json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m)
	m["certificateLifetime"] = "2h"
	changed, _ := json.Marshal(m)
	req, err := owner.Request(changed, verified, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}
	moved := h.c.Status()

	mismatch := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, api.ErrHeadMismatch) || !strings.Contains(err.Error(), verified) || !strings.Contains(err.Error(), moved.Head) {
			t.Fatalf("pinned %s after the head moved: %v, want head-mismatch naming both heads", what, err)
		}
	}
	// A revocation signed on the new head, sent pinned to the old one.
	m["certificateLifetime"] = "2h"
	m["revoked"] = []map[string]string{{"fingerprint": fingerprintOf(t, e.Certificate)}}
	revoking, _ := json.Marshal(m)
	rev, err := owner.Request(revoking, moved.Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pinned.SetManifest(ctx, rev)
	mismatch("revoke", err)
	_, err = enrol.Retry{Rounds: 1}.Workload(ctx, pinned, webDev, api.Workload{Namespace: "prod", Name: "web-1"})
	mismatch("enrolment", err)
	mismatch("release", pinned.Release(ctx, &api.ReleaseRequest{Fingerprint: fingerprintOf(t, e.Certificate), ReleaseToken: e.ReleaseToken, IP: e.IP}))

	// Nothing changed, in the store itself.
	st, err := store.OpenFile(d.store)
	if err != nil {
		t.Fatal(err)
	}
	cur, head, gen, err := history.Peek(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if head != moved.Head || gen != moved.Generation || len(cur.Revoked) != 0 {
		t.Fatalf("store at %s (generation %d, %d revoked); want %s, %d, none", head, gen, len(cur.Revoked), moved.Head, moved.Generation)
	}
	if after := h.c.Status(); after.HostCount != moved.HostCount || after.HostCount != 1 {
		t.Fatalf("%d live leases after the refused calls, want 1", after.HostCount)
	}

	// Pinned to the current head, the same calls go through.
	if _, err := h.client.ExpectingHead(moved.Head).SetManifest(ctx, rev); err != nil {
		t.Fatalf("pinned to the current head: %v", err)
	}
}
