package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestLogger(t *testing.T) {
	for _, tt := range []struct {
		level, format string
		err           string
		debug         bool
		prefix        string
	}{
		{"info", "json", "", false, `{"time":`},
		{"debug", "text", "", true, "time="},
		{"DEBUG", "json", "", true, `{"time":`},
		{"warn", "", "", false, ""},
		{"verbose", "json", "--log-level", false, ""},
		{"info+2", "json", "--log-level", false, ""},
		{"info", "xml", "--log-format", false, ""},
	} {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := (&Options{Level: tt.level, Format: tt.format}).Logger(&buf)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("d")
			if got := buf.Len() > 0; got != tt.debug {
				t.Fatalf("debug logged %v, want %v", got, tt.debug)
			}
			log.Warn("w")
			if !strings.HasPrefix(buf.String(), tt.prefix) {
				t.Fatalf("output %q, want prefix %q", buf.String(), tt.prefix)
			}
		})
	}
}
