package manifest

import (
	"strings"
	"testing"
)

// TestCheckJoinToken is finding 12's entropy check: the manifest keeps only
// a token's SHA-256, so a short or narrow token is refused wherever the
// token itself is seen (the lighthouse before it sends it, the coordinator
// when it is presented).
func TestCheckJoinToken(t *testing.T) {
	for _, c := range []struct {
		token string
		ok    bool
	}{
		{"", false},
		{"hunter2", false},
		{"lighthouse-token-for-tests", false},       // 26 of [a-z-]: 124 bits at most
		{strings.Repeat("a", 200), false},           // one character
		{strings.Repeat("0f", 15), false},           // 30 hex digits: 120 bits
		{"3f9c2a7d1e5b8c4f6a0d2e9b7c1f3a5d", true},  // 32 hex digits: 128 bits
		{"q7Ze3LxP0vN9sKd2Rw5TbY", true},            // 22 base64url-like characters: 131 bits
		{"SMTKN-1-abc-q7Ze3LxP0vN9sKd2Rw5Tb", true}, // long enough with classes
		{strings.ToUpper("3f9c2a7d1e5b8c4f6a0d2e9b7c1f3a"), false},
	} {
		err := CheckJoinToken(c.token)
		if (err == nil) != c.ok {
			t.Errorf("CheckJoinToken(%q) = %v, want ok=%v (%.0f bits)", c.token, err, c.ok, tokenBits(c.token))
		}
		if err != nil && c.token != "" && strings.Contains(err.Error(), c.token) {
			t.Errorf("the refusal repeats the token: %v", err)
		}
	}
}
