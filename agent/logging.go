package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger returns the daemon's logger: human-readable text on a terminal,
// JSON lines otherwise (under systemd, or when output is redirected).
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	l, _ := NewLoggerFormat(w, level, "")
	return l
}

// LogFormats are the values of --log.format: logfmt (key=value text) and
// json; "" picks logfmt on a terminal and JSON elsewhere (journald).
var LogFormats = []string{"logfmt", "json"}

// NewLoggerFormat is NewLogger with the format of --log.format; an unknown
// format is an error naming the known ones.
func NewLoggerFormat(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "":
		if isTerminal(w) && os.Getenv("INVOCATION_ID") == "" {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "logfmt":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), fmt.Errorf("--log.format %q: use %s", format, strings.Join(LogFormats, " or "))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
