package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/node/nodetest"
)

// Issue 28: readiness means "can serve". A pod-mode agent is ready only
// while attached with a certificate that has not expired: one whose
// renewals failed past its certificate's end serves no handshake.
func TestSelfReadiness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	a := agentOver(t, m, nodetest.NewFakeNode(selfNetns), t.TempDir())
	if err := a.SelfReady(); err == nil {
		t.Fatal("ready before attaching")
	}
	if _, err := a.Self(ctx, Pod{ContainerID: "pod-self", IfName: "nebula1", Namespace: "shop", Name: "self", UID: "5e1f-0000"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SelfReady(); err != nil {
		t.Fatalf("not ready once attached: %v", err)
	}
	m.Clock.Add(2 * time.Hour) // past the certificate's end, never renewed
	if err := a.SelfReady(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("ready with an expired certificate: %v", err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.SelfReady(); err == nil {
		t.Fatal("ready after leaving")
	}
}
