package bundle

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hsm-agent/hsm-agent/internal/testutil"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct{ testutil.SyncBuffer }

func (s *syncBuffer) lines() []string {
	return strings.Split(strings.TrimSpace(s.String()), "\n")
}

func decode(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("kept line is not JSON: %q: %v", line, err)
	}
	return m
}

func msgs(t *testing.T, lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, decode(t, l)["msg"].(string))
	}
	return out
}

// TestLogBufferRing: per-device rings of the newest N lines, records without
// a device passed on but not kept, the next handler sees everything.
func TestLogBufferRing(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	buf := NewLogBuffer(slog.NewJSONHandler(&out, nil), 3)
	log := slog.New(buf)
	for i := range 5 {
		log.Info(fmt.Sprintf("a%d", i), "device", "hsm-a")
	}
	log.Info("b0", "device", "hsm-b")
	log.Info("no device", "serial", "123")
	log.Info("b1", slog.String("device", "hsm-b"), "n", 1)

	if got := msgs(t, buf.Lines("hsm-a")); strings.Join(got, ",") != "a2,a3,a4" {
		t.Errorf("hsm-a kept %v, want the newest 3", got)
	}
	if got := msgs(t, buf.Lines("hsm-b")); strings.Join(got, ",") != "b0,b1" {
		t.Errorf("hsm-b kept %v", got)
	}
	if got := buf.Lines("hsm-c"); got != nil {
		t.Errorf("unknown device: %v", got)
	}
	if n := len(out.lines()); n != 8 {
		t.Errorf("next handler got %d records, want 8", n)
	}
	line := decode(t, buf.Lines("hsm-b")[1])
	if line["level"] != "INFO" || line["device"] != "hsm-b" || line["n"] != float64(1) || line["time"] == nil {
		t.Errorf("kept line %v", line)
	}
	if got := NewLogBuffer(slog.NewJSONHandler(&out, nil), 0).store.per; got != DefaultLogLines {
		t.Errorf("default ring size %d", got)
	}
}

// TestLogBufferWithAndGroups: the device may come from Logger.With, from a
// group or from the record; kept lines are formatted with the same groups
// and attributes as the next handler's.
func TestLogBufferWithAndGroups(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	buf := NewLogBuffer(slog.NewJSONHandler(&out, nil), 10)
	root := slog.New(buf)

	devLog := root.With("device", "hsm-a", "serial", "S1")
	devLog.Info("with")
	devLog.WithGroup("probe").Info("grouped", "check", "random")
	root.WithGroup("rma").With("device", "hsm-b").Info("group then with", "k", 1)
	root.Info("inline group", slog.Group("ctx", "device", "hsm-c"))
	devLog.Info("record overrides", "device", "hsm-d")
	root.With("device", config.Secret("hsm-e")).Info("log valuer") // resolves to "<secret>"
	root.WithGroup("").With().Info("no-op derivations")

	want := map[string][]string{
		"hsm-a":    {"with", "grouped"},
		"hsm-b":    {"group then with"},
		"hsm-c":    {"inline group"},
		"hsm-d":    {"record overrides"},
		"<secret>": {"log valuer"},
	}
	for dev, w := range want {
		if got := msgs(t, buf.Lines(dev)); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("%s kept %v, want %v", dev, got, w)
		}
	}
	// The kept lines equal what the next handler wrote, minus time.
	next := out.lines()
	kept := append(buf.Lines("hsm-a"), buf.Lines("hsm-b")...)
	for i, l := range kept {
		k, n := decode(t, l), decode(t, next[i])
		delete(k, "time")
		delete(n, "time")
		kj, _ := json.Marshal(k)
		nj, _ := json.Marshal(n)
		if string(kj) != string(nj) {
			t.Errorf("kept %s\nnext %s", kj, nj)
		}
	}
	g := decode(t, buf.Lines("hsm-a")[1])
	if g["device"] != "hsm-a" || g["serial"] != "S1" || g["probe"].(map[string]any)["check"] != "random" {
		t.Errorf("grouped line %v", g)
	}
	b := decode(t, buf.Lines("hsm-b")[0])
	if r := b["rma"].(map[string]any); r["device"] != "hsm-b" || r["k"] != float64(1) {
		t.Errorf("group-then-with line %v", b)
	}
}

// TestLogBufferLevelAndConcurrency: the buffer keeps what the next handler
// takes, and derived loggers share the rings safely (run with -race).
func TestLogBufferLevelAndConcurrency(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	buf := NewLogBuffer(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}), 50)
	log := slog.New(buf)
	log.Info("dropped", "device", "hsm-a")
	log.Warn("kept", "device", "hsm-a")
	if got := msgs(t, buf.Lines("hsm-a")); strings.Join(got, ",") != "kept" {
		t.Errorf("kept %v, want only the warning", got)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("device", fmt.Sprintf("dev-%d", g%2)).WithGroup("w")
			for i := range 100 {
				l.Warn("m", "i", i)
				_ = buf.Lines("dev-0")
			}
		}()
	}
	wg.Wait()
	for _, d := range []string{"dev-0", "dev-1"} {
		if n := len(buf.Lines(d)); n != 50 {
			t.Errorf("%s kept %d lines, want 50", d, n)
		}
	}
}
