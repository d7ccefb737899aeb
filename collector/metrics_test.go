package collector

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// gatherText returns the registry's metrics in the text exposition format,
// as /metrics serves them. (testutil.GatherAndFormat without names gathers nothing.)
func gatherText(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
	}
	return buf.Bytes()
}

// golden compares the registry's output with testdata/name, or rewrites it with -update.
func golden(t *testing.T, reg *prometheus.Registry, name string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, gatherText(t, reg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Fatalf("metrics differ from %s:\n%v", path, err)
	}
}

func TestMetricsGolden(t *testing.T) {
	t.Parallel()
	c, _ := newGoldenCollector(t)
	snap := c.PollOnce(context.Background(), false)
	if !snap.Ready {
		t.Fatal("snapshot not ready after PollOnce")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	golden(t, reg, "metrics.golden")
}

func TestMetricsBeforeFirstPoll(t *testing.T) {
	t.Parallel()
	c, _ := newGoldenCollector(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	// Only the inventory's contracts are known before any poll.
	golden(t, reg, "metrics-before-poll.golden")
	if c.Ready() {
		t.Error("ready before any poll")
	}
}

// TestPromtoolCheckMetrics lints the gathered text with Prometheus' own promtool.
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is required (apt-get install -y prometheus): %v", err)
	}
	c, _ := newGoldenCollector(t)
	c.PollOnce(context.Background(), false)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	text := gatherText(t, reg)
	if !bytes.Contains(text, []byte("hsm_up{")) {
		t.Fatalf("gathered text has no hsm_up series:\n%s", text)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("promtool check metrics: %v\n%s\n--- input ---\n%s", err, out, text)
	}
}

// TestScrapeNeverWaitsOnProbe gathers metrics and reads the snapshot while a
// probe is stuck: both must return while the poll is still blocked.
func TestScrapeNeverWaitsOnProbe(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	c.PollOnce(context.Background(), false)
	release := f.hold("alpha")
	defer release()

	polled := make(chan struct{})
	go func() {
		defer close(polled)
		c.PollOnce(context.Background(), false)
	}()
	// Wait until both modules' probes have started (beta returns, alpha blocks).
	f.nextPoll(t)
	f.nextPoll(t)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	n, err := testutil.GatherAndCount(reg, "hsm_up")
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 {
		t.Errorf("hsm_up series during a stuck poll = %d, want 7", n)
	}
	if s := c.Snapshot(); len(s.Devices) != 7 || !s.Ready {
		t.Errorf("snapshot during a stuck poll: %d devices, ready %v", len(s.Devices), s.Ready)
	}
	if h := c.History("hsm-a"); len(h) != 1 {
		t.Errorf("history during a stuck poll has %d entries, want 1", len(h))
	}
	select {
	case <-polled:
		t.Fatal("the poll finished although its probe was blocked; the test proves nothing")
	default:
	}
	release()
	<-polled
}
