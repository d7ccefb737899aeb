package agent

import (
	"io"
	"log/slog"
	"os"
)

// NewLogger returns the daemon's logger: human-readable text on a terminal,
// JSON lines otherwise (under systemd, or when output is redirected).
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if isTerminal(w) && os.Getenv("INVOCATION_ID") == "" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
