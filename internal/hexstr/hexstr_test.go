package hexstr

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		v    string
		n    int
		want string // "" for valid
	}{
		{strings.Repeat("a", 96), 96, ""},
		{strings.Repeat("0", 64), 64, ""},
		{strings.Repeat("A", 96), 96, "got upper-case hex: write it in lower case"},
		{strings.Repeat("a", 95), 96, "want 96 lower-case hex characters, got 95"},
		{strings.Repeat("a", 10) + "g" + strings.Repeat("a", 85), 96, `got 'g' at position 11`},
		{"0x" + strings.Repeat("a", 94), 96, `got 'x' at position 2`},
		{"", 64, "got 0"},
	} {
		err := Check(tc.v, tc.n)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q, %d) = %v, want %q", tc.v, tc.n, err, tc.want)
		}
	}
}
