package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/internal/testutil"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// TestMain lets the test binary act as the probe worker, as the real
// binary does with `hsm-agent probe-worker`.
func TestMain(m *testing.M) {
	testutil.RunWorkerIfAsked()
	os.Exit(m.Run())
}

// testWorker is the worker command for tests: this binary, re-executed. The
// sites' module env (testutil.WorkerEnv, see e2eSite.write) makes it serve
// as the probe worker, so tests need not touch the process environment.
func testWorker() []string { return []string{os.Args[0]} }

// newSite creates n tokens named hsm-0..hsm-(n-1), all production in pool
// "payments" (min_healthy 1) with a spool desk, and writes a config with
// the given extra top-level settings (e.g. "probe_timeout: 1s").
func newSite(t *testing.T, n int, extra string) *e2eSite {
	t.Helper()
	s := newE2ESite(t, n)
	var devices strings.Builder
	for i := range n {
		devices.WriteString(s.device(i, fmt.Sprintf("hsm-%d", i),
			fmt.Sprintf("environment: production, pool: payments, contract: {id: C-%d, tier: premium, expires: 2030-01-31, region: emea}", i)))
	}
	s.write(t, siteConfig{
		Settings: extra,
		Pools:    "  - {name: payments, min_healthy: 1}\n",
		Devices:  devices.String(),
		Desks:    fmt.Sprintf("  - {name: ops, type: spool, role: internal, dir: %q}\n", filepath.Join(s.dir, "spool")),
	}, []string{"listen: 127.0.0.1:0", "poll_interval: 300ms", "probe_timeout: 2s"})
	return s
}

// runningAgent is an agent started in-process on 127.0.0.1:0.
type runningAgent struct {
	url    string
	config string // the configuration file it runs on
	reload chan struct{}
	logs   *syncBuffer
	done   chan error
	// polls counts the polls the case engine has processed (Options.Polled).
	polls atomic.Int64
}

type syncBuffer = testutil.SyncBuffer

// startAgent runs the agent in-process on configFile, serving plain HTTP.
func startAgent(t *testing.T, configFile string) *runningAgent {
	t.Helper()
	return startAgentWeb(t, configFile, "")
}

func (ra *runningAgent) get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, body, err := httpGet(ra.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

func (ra *runningAgent) metrics(t *testing.T) string {
	t.Helper()
	code, body := ra.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: status %d", code)
	}
	return body
}

func TestRunServesHealthMetricsAndStatus(t *testing.T) {
	s := newSite(t, 2, "")
	ra := startAgent(t, s.config)
	if code, _ := ra.get(t, "/-/healthy"); code != 200 {
		t.Fatalf("/-/healthy: %d", code)
	}
	waitUntil(t, 15*time.Second, "ready", func() bool { code, _ := ra.get(t, "/-/ready"); return code == 200 })
	body := ra.metrics(t)
	for i, tok := range s.fleet.Tokens {
		want := fmt.Sprintf(`hsm_up{device="hsm-%d",serial=%q} 1`, i, tok.Serial)
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, name := range []string{"hsm_agent_build_info{", "hsm_agent_config_last_reload_successful 1", `hsm_device_state{device="hsm-0",state="healthy"} 1`} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	// The live output is valid for Prometheus' own linter.
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	_, page := ra.get(t, "/")
	if !strings.Contains(page, "hsm-1") || !strings.Contains(page, "healthy") {
		t.Errorf("status page lacks the devices:\n%s", page)
	}
	_, devices := ra.get(t, "/api/v1/devices")
	if !strings.Contains(devices, s.fleet.Tokens[1].Serial) {
		t.Errorf("/api/v1/devices lacks serial %s: %s", s.fleet.Tokens[1].Serial, devices)
	}
}

func TestReloadKeepsRunningConfigOnError(t *testing.T) {
	s := newSite(t, 2, "")
	good, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ra := startAgent(t, s.config)
	waitUntil(t, 15*time.Second, "first poll", func() bool { return strings.Contains(ra.metrics(t), `hsm_up{device="hsm-1"`) })

	// A broken file: the agent keeps polling with the old configuration.
	if err := os.WriteFile(s.config, append(good, []byte("bogus_field: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	ra.reload <- struct{}{}
	waitUntil(t, 10*time.Second, "reload failure metric", func() bool {
		return strings.Contains(ra.metrics(t), "hsm_agent_config_last_reload_successful 0")
	})
	if !strings.Contains(ra.logs.String(), "bogus_field") {
		t.Errorf("the reload error should name the bad field; logs:\n%s", ra.logs.String())
	}
	if !strings.Contains(ra.metrics(t), `hsm_up{device="hsm-1"`) {
		t.Error("devices vanished after a failed reload")
	}

	// A good file that drops hsm-1: applied.
	trimmed := string(good)
	cut := strings.Index(trimmed, "  - {name: hsm-1,")
	end := strings.Index(trimmed, "desks:")
	trimmed = trimmed[:cut] + trimmed[end:]
	if err := os.WriteFile(s.config, []byte(trimmed), 0o644); err != nil {
		t.Fatal(err)
	}
	ra.reload <- struct{}{}
	waitUntil(t, 10*time.Second, "reload success", func() bool {
		m := ra.metrics(t)
		return strings.Contains(m, "hsm_agent_config_last_reload_successful 1") && !strings.Contains(m, `device="hsm-1"`)
	})
}

func TestHungTokenIsUnresponsiveWhileMetricsStayFast(t *testing.T) {
	s := newSite(t, 3, "")
	ra := startAgent(t, s.config)
	waitUntil(t, 15*time.Second, "healthy fleet", func() bool {
		return strings.Contains(ra.metrics(t), `hsm_device_state{device="hsm-1",state="healthy"} 1`)
	})
	if err := s.faults.Set(s.fleet.Tokens[1].Serial, pkcs11test.FaultHang, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.faults.ClearAll() })
	start := time.Now()
	var slowest time.Duration
	waitUntil(t, 2*time.Second+time.Second+300*time.Millisecond+2*time.Second, "hsm-1 unresponsive", func() bool {
		t0 := time.Now()
		m := ra.metrics(t)
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		return strings.Contains(m, `hsm_device_state{device="hsm-1",state="unresponsive"} 1`)
	})
	t.Logf("unresponsive after %v; slowest scrape %v", time.Since(start), slowest)
	// probe_timeout (2s) + 1s, plus up to one poll interval before the poll that hangs starts.
	if took := time.Since(start); took > 2*time.Second+time.Second+300*time.Millisecond {
		t.Errorf("hang reported after %v, want within probe_timeout + 1s (+ poll interval)", took)
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("a /metrics scrape took %v while a token hung, want < 100ms", slowest)
	}
	m := ra.metrics(t)
	for _, d := range []string{"hsm-0", "hsm-2"} {
		if !strings.Contains(m, fmt.Sprintf(`hsm_device_state{device=%q,state="healthy"} 1`, d)) {
			t.Errorf("%s should stay healthy while hsm-1 hangs", d)
		}
	}
}
