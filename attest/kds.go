package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-sev-guest/verify/trust"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// CertCache serves AMD key-distribution-service answers (VCEKs, the ASK/ARK
// bundle) from a directory, and fetches missing ones through Next when it is set:
// set Next (trust.DefaultHTTPSGetter) only where the coordinator may reach AMD.
// What is fetched is kept, so each chip's VCEK is fetched once. Everything it
// returns is still verified against AMD's roots.
type CertCache struct {
	Dir  string
	Next trust.HTTPSGetter
}

var _ trust.HTTPSGetter = (*CertCache)(nil)

// Get implements trust.HTTPSGetter.
func (c *CertCache) Get(url string) ([]byte, error) {
	sum := sha256.Sum256([]byte(url))
	name := hex.EncodeToString(sum[:])
	b, err := os.ReadFile(filepath.Join(c.Dir, name))
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if c.Next == nil {
		return nil, fmt.Errorf("attest: %s is not in the certificate cache %s and fetching from AMD is off", url, c.Dir)
	}
	b, err = c.Next.Get(url)
	if err != nil {
		return nil, fmt.Errorf("attest: fetch %s: %w", url, err)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(c.Dir, name, b); err != nil {
		return nil, err
	}
	return b, nil
}

// CollateralCache serves Intel's TDX collateral (TCB info, QE identity, CRLs)
// from a directory, fetching missing entries through Next when it is set. With
// collateral, TDX verification also checks the platform's TCB status and the
// collateral's own expiry.
type CollateralCache struct {
	Dir  string
	Next tdxtrust.HTTPSGetter
}

var _ tdxtrust.HTTPSGetter = (*CollateralCache)(nil)

type collateralEntry struct {
	Header map[string][]string `json:"header"`
	Body   []byte              `json:"body"`
}

// Get implements go-tdx-guest's trust.HTTPSGetter.
func (c *CollateralCache) Get(url string) (map[string][]string, []byte, error) {
	sum := sha256.Sum256([]byte(url))
	name := hex.EncodeToString(sum[:])
	b, err := os.ReadFile(filepath.Join(c.Dir, name))
	if err == nil {
		var e collateralEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, nil, fmt.Errorf("attest: collateral cache entry for %s: %w", url, err)
		}
		return e.Header, e.Body, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if c.Next == nil {
		return nil, nil, fmt.Errorf("attest: %s is not in the collateral cache %s and fetching from Intel is off", url, c.Dir)
	}
	h, body, err := c.Next.Get(url)
	if err != nil {
		return nil, nil, fmt.Errorf("attest: fetch %s: %w", url, err)
	}
	e, err := json.Marshal(collateralEntry{Header: h, Body: body})
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, nil, err
	}
	return h, body, atomicfile.Write(c.Dir, name, e)
}
