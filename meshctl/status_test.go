package meshctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
)

// TestStatusMarksRevoked: a revoked host is marked in the table.
func TestStatusMarksRevoked(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	PrintStatus(&b, &api.Status{State: api.StateReady, HostCount: 2, Hosts: []api.Host{
		{Name: "pod-10-42-0-2", IP: "10.42.0.2", NotAfter: now.Add(time.Hour)},
		{Name: "pod-10-42-0-3", IP: "10.42.0.3", NotAfter: now.Add(time.Hour), Revoked: true},
	}}, now)
	out := b.String()
	if !strings.Contains(out, "pod-10-42-0-3 (REVOKED)") || strings.Contains(out, "pod-10-42-0-2 (REVOKED)") {
		t.Fatalf("status:\n%s", out)
	}
}
