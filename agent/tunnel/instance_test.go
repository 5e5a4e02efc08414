package tunnel

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidInstance(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"abc123-nebula1", true},
		{"a", true},
		{strings.Repeat("a", maxInstanceID), true},
		{strings.Repeat("a", maxInstanceID+1), false},
		{"", false},
		{"_abc", false},
		{"-abc", false},
		{"a/b", false},
		{"a..b", true},
		{"a b", false},
	} {
		if got := validInstance(tc.id); got != tc.want {
			t.Errorf("validInstance(%.20q (%d bytes)) = %v, want %v", tc.id, len(tc.id), got, tc.want)
		}
	}
}

// TestInstanceRECheap: the pattern is compiled at every tunnel process's
// start; {0,300} made it 3,900 allocations and 2.5 ms.
func TestInstanceRECheap(t *testing.T) {
	if n := testing.AllocsPerRun(3, func() { regexp.MustCompile(instanceRE.String()) }); n > 200 {
		t.Errorf("compiling %s takes %.0f allocations", instanceRE, n)
	}
}
