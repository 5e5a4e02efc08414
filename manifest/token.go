package manifest

import (
	"fmt"
	"math"
	"strings"
)

// MinTokenBits is the least strength a join token must show. The manifest,
// which is public, holds the token's SHA-256: a token guessable in fewer
// than 2^128 tries would be found offline from it.
const MinTokenBits = 128

// CheckJoinToken refuses a token that cannot have MinTokenBits of entropy:
// its length times the bits a character of its alphabet can carry, the
// alphabet being hexadecimal if every character is a hex digit, else the
// classes it uses (digits, lower, upper, and each other character seen).
// It is a floor, not a measure: a long phrase of words passes. Make tokens
// from a random source: head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'.
func CheckJoinToken(token string) error {
	bits := tokenBits(token)
	if bits < MinTokenBits {
		return fmt.Errorf("join token too weak: %d characters can carry at most %.0f bits, want %d (make one from a random source: 32 hex digits)", len(token), bits, MinTokenBits)
	}
	return nil
}

func tokenBits(token string) float64 {
	if token == "" {
		return 0
	}
	hex := strings.Trim(token, "0123456789abcdef") == "" || strings.Trim(token, "0123456789ABCDEF") == ""
	alphabet := 16
	if !hex {
		var digit, lower, upper bool
		other := map[rune]bool{}
		for _, r := range token {
			switch {
			case r >= '0' && r <= '9':
				digit = true
			case r >= 'a' && r <= 'z':
				lower = true
			case r >= 'A' && r <= 'Z':
				upper = true
			default:
				other[r] = true
			}
		}
		alphabet = len(other)
		for _, used := range []struct {
			on bool
			n  int
		}{{digit, 10}, {lower, 26}, {upper, 26}} {
			if used.on {
				alphabet += used.n
			}
		}
	}
	// A token of one repeated character carries nothing, whatever its length.
	distinct := map[rune]bool{}
	for _, r := range token {
		distinct[r] = true
	}
	if len(distinct) < 2 {
		return 0
	}
	return float64(len([]rune(token))) * math.Log2(float64(alphabet))
}
