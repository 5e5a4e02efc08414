// Package hexstr checks the fixed-length lower-case hex strings manifests
// and policies are written in (measurements, fingerprints, hashes), and says
// what is wrong with one a person wrote.
package hexstr

import "fmt"

// Check returns nil if v is n lower-case hex characters, else an error
// that says what is wrong: the length, upper case, or the first character
// that is not hex.
func Check(v string, n int) error {
	upper := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			upper = true
		default:
			return fmt.Errorf("want %d lower-case hex characters, got %q at position %d", n, c, i+1)
		}
	}
	switch {
	case len(v) != n:
		return fmt.Errorf("want %d lower-case hex characters, got %d", n, len(v))
	case upper:
		return fmt.Errorf("want %d lower-case hex characters, got upper-case hex: write it in lower case", n)
	}
	return nil
}
