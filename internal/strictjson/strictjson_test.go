package strictjson

import (
	"strings"
	"testing"
)

type inner struct {
	Measurements []string `json:"measurements"`
	VMPL         *int     `json:"vmpl,omitempty"`
}

type doc struct {
	Version             int    `json:"version"`
	CertificateLifetime string `json:"certificateLifetime"`
	Roles               []struct {
		Name        string           `json:"name"`
		Attestation map[string]inner `json:"attestation"`
	} `json:"roles"`
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"version": 1, "certificateLifetme": "1h"}`, `unknown field "certificateLifetme" (did you mean "certificateLifetime"?)`},
		{`{"roles": [{"name": "web", "attestation": {"simulated": {"measurment": []}}}]}`, `roles[0].attestation.simulated: unknown field "measurment" (did you mean "measurements"?)`},
		{`{"colour": 1}`, `unknown field "colour"`},
		{`{"version": "one"}`, "version: want a whole number, got a string"},
		{`{"roles": [{"attestation": {"simulated": {"measurements": [1]}}}]}`, "want a string, got a number"},
	} {
		var d doc
		err := Decode([]byte(tc.in), &d)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "json:") {
			t.Errorf("%s: %v, want %q", tc.in, err, tc.want)
		}
	}
	var d doc
	if err := Decode([]byte(`{"Version": 1, "roles": [{"name": "web"}]}`), &d); err != nil || d.Version != 1 {
		t.Errorf("a valid document: %v", err)
	}
	if err := Decode([]byte(`{"colour": 1}`), &d); strings.Contains(err.Error(), "did you mean") {
		t.Errorf("suggested a field for a word unlike any: %v", err)
	}
}
