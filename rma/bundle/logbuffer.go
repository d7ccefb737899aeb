package bundle

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// DefaultLogLines is how many lines per device a LogBuffer keeps when
// NewLogBuffer is given no positive number.
const DefaultLogLines = 500

// DeviceKey is the attribute that ties a log record to a device.
const DeviceKey = "device"

// LogBuffer is an slog.Handler that passes every record on to the next
// handler and also keeps, per device, the last lines (formatted as JSON) of
// the records that carry a "device" attribute: on the record, added with
// Logger.With, or inside a group. When a record carries several, the last
// one wins (the record's own over the logger's). Loggers derived with With
// and WithGroup share the buffer.
type LogBuffer struct {
	next   slog.Handler
	format slog.Handler // JSON, writing into store
	store  *logStore
	device string // from WithAttrs
}

// logStore is the rings shared by a LogBuffer and the handlers derived from it.
type logStore struct {
	mu    sync.Mutex
	per   int
	rings map[string]*ring
	cur   string // the device of the record being formatted (under mu)
}

// ring is a fixed-size ring of lines.
type ring struct {
	lines []string
	next  int
	full  bool
}

// NewLogBuffer wraps next, keeping perDevice lines per device
// (DefaultLogLines when perDevice <= 0).
func NewLogBuffer(next slog.Handler, perDevice int) *LogBuffer {
	if perDevice <= 0 {
		perDevice = DefaultLogLines
	}
	st := &logStore{per: perDevice, rings: map[string]*ring{}}
	return &LogBuffer{next: next, store: st, format: slog.NewJSONHandler(st, nil)}
}

// Enabled reports whether the next handler takes records of this level;
// the buffer keeps exactly what is logged.
func (b *LogBuffer) Enabled(ctx context.Context, l slog.Level) bool {
	return b.next.Enabled(ctx, l)
}

// Handle passes r on and keeps its JSON line under its device, if it has one.
func (b *LogBuffer) Handle(ctx context.Context, r slog.Record) error {
	dev := b.device
	r.Attrs(func(a slog.Attr) bool {
		if d, ok := findDevice(a); ok {
			dev = d
		}
		return true
	})
	if dev != "" {
		b.store.mu.Lock()
		b.store.cur = dev
		_ = b.format.Handle(ctx, r.Clone())
		b.store.cur = ""
		b.store.mu.Unlock()
	}
	return b.next.Handle(ctx, r)
}

// WithAttrs returns a handler whose records carry attrs, in both the next
// handler and the kept lines.
func (b *LogBuffer) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return b
	}
	c := *b
	c.next = b.next.WithAttrs(attrs)
	c.format = b.format.WithAttrs(attrs)
	for _, a := range attrs {
		if d, ok := findDevice(a); ok {
			c.device = d
		}
	}
	return &c
}

// WithGroup returns a handler that puts the following attributes in a group.
func (b *LogBuffer) WithGroup(name string) slog.Handler {
	if name == "" {
		return b
	}
	c := *b
	c.next = b.next.WithGroup(name)
	c.format = b.format.WithGroup(name)
	return &c
}

// Lines returns the kept lines of a device, oldest first, without newlines.
func (b *LogBuffer) Lines(device string) []string {
	b.store.mu.Lock()
	defer b.store.mu.Unlock()
	r := b.store.rings[device]
	if r == nil {
		return nil
	}
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// findDevice looks for the device attribute in a (and in a's group).
func findDevice(a slog.Attr) (string, bool) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		dev, found := "", false
		for _, g := range v.Group() {
			if d, ok := findDevice(g); ok {
				dev, found = d, true
			}
		}
		return dev, found
	}
	if a.Key != DeviceKey {
		return "", false
	}
	d := v.String()
	return d, d != ""
}

// Write receives one formatted line from the JSON handler (called with mu held).
func (s *logStore) Write(p []byte) (int, error) {
	if s.cur == "" {
		return len(p), nil
	}
	r := s.rings[s.cur]
	if r == nil {
		r = &ring{lines: make([]string, s.per)}
		s.rings[s.cur] = r
	}
	r.lines[r.next] = strings.TrimRight(string(p), "\n")
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	return len(p), nil
}
