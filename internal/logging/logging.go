// Package logging is the daemons' one way to make their logger: the level
// and format flags every daemon takes, and a slog.Logger from them.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// Options are a daemon's logging flags.
type Options struct {
	Level  string
	Format string
}

// AddFlags adds --log-level and --log-format to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Level, "log-level", "info", "least severe messages logged: debug, info, warn or error")
	fs.StringVar(&o.Format, "log-format", "json", "json (one object per line) or text (key=value)")
}

// Logger writes to w as the options say.
func (o *Options) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.Level)); err != nil || strings.ContainsAny(o.Level, "+-") {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.Level)
	}
	h := &slog.HandlerOptions{Level: level}
	switch o.Format {
	case "json", "":
		return slog.New(slog.NewJSONHandler(w, h)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, h)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", o.Format)
}
