package api_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
)

// TestProtocolDocMatchesRoutes: docs/protocol.md's table names exactly the
// routes the server serves, and its code table exactly the codes there are.
func TestProtocolDocMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `((?:GET|POST) /(?:v1|\\.well-known)/[^`?]+)").FindAllStringSubmatch(doc, -1) {
		documented = append(documented, m[1])
	}
	var served []string
	for _, r := range api.Routes {
		served = append(served, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("docs/protocol.md documents\n  %s\nthe server serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
	for _, c := range api.Codes() {
		if !strings.Contains(doc, "| `"+string(c)+"` |") {
			t.Errorf("docs/protocol.md does not explain error code %s", c)
		}
	}
}
