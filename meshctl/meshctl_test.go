package meshctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/api"
)

func TestPrintHistory(t *testing.T) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	h := []api.HistoryEntry{
		{Generation: 1, Head: strings.Repeat("a", 64), Time: at, Signer: "alice", Hash: strings.Repeat("1", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"1h","roles":[{"name":"web"}]}`)},
		{Generation: 2, Head: strings.Repeat("b", 64), Time: at.Add(time.Hour), Signer: "bob", Hash: strings.Repeat("2", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"2h","roles":[{"name":"web"}]}`)},
		{Generation: 3, Head: strings.Repeat("c", 64), Time: at.Add(2 * time.Hour), Signer: "bob", Hash: strings.Repeat("2", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"2h","roles":[{"name":"web"}]}`)},
	}
	var b bytes.Buffer
	PrintHistory(&b, h)
	want := `generation 1  head aaaaaaaaaaaa  2026-11-23T01:02:03Z  signed by alice  manifest 111111111111
  (first manifest, 9 lines)
generation 2  head bbbbbbbbbbbb  2026-11-23T02:02:03Z  signed by bob  manifest 222222222222
  - "certificateLifetime": "1h",
  + "certificateLifetime": "2h",
generation 3  head cccccccccccc  2026-11-23T03:02:03Z  signed by bob  manifest 222222222222
  (no change)
`
	if b.String() != want {
		t.Fatalf("PrintHistory:\n%s\nwant:\n%s", b.String(), want)
	}
}
