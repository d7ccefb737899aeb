package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/packaging/promcheck"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// promQueryResult is the part of Prometheus' /api/v1/query answer the test reads.
type promQueryResult struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// startPrometheus runs Debian's prometheus on a free loopback port with the
// given configuration and returns its base URL once it is ready. It is
// killed when the test ends.
func startPrometheus(t *testing.T, config string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (Debian: apt-get install -y prometheus): %v", err)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port: bind, note, release (prometheus binds it right after).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	logs := &syncBuffer{}
	cmd := exec.Command(bin,
		"--config.file", cfgFile,
		"--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr,
		"--log.level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("prometheus exited: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready on %s within 10s\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// promQuery runs an instant query through Prometheus' HTTP API.
func promQuery(t *testing.T, base, query string) promQueryResult {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatalf("query %s: %v", query, err)
	}
	defer resp.Body.Close()
	var r promQueryResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query %s: decode: %v", query, err)
	}
	if r.Status != "success" {
		t.Fatalf("query %s: status %q", query, r.Status)
	}
	return r
}

// TestPrometheusScrapesAgent runs a real Prometheus scraping an in-process
// agent every second and reads hsm_up back through Prometheus' query API.
func TestPrometheusScrapesAgent(t *testing.T) {
	s := newSite(t, 3, "recheck_interval: 100ms")
	ra := startAgent(t, s.config)
	target := strings.TrimPrefix(ra.url, "http://")
	t0 := time.Now()
	base := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hsm-agent
    static_configs:
      - targets: [%q]
`, target))

	t.Logf("prometheus ready after %v", time.Since(t0))
	// Wait until Prometheus holds hsm_up for every device: the agent has
	// polled and Prometheus has scraped it since.
	var r promQueryResult
	waitUntil(t, 10*time.Second, "hsm_up for every device in Prometheus", func() bool {
		r = promQuery(t, base, `hsm_up{job="hsm-agent"}`)
		return len(r.Data.Result) == len(s.fleet.Tokens)
	})
	t.Logf("hsm_up in prometheus after %v", time.Since(t0))
	if r.Data.ResultType != "vector" {
		t.Errorf("hsm_up result type %q, want vector", r.Data.ResultType)
	}
	got := map[string]string{}
	for _, series := range r.Data.Result {
		dev := series.Metric["device"]
		if _, dup := got[dev]; dup {
			t.Errorf("two hsm_up series for device %q", dev)
		}
		got[dev] = series.Metric["serial"]
		if v, _ := series.Value[1].(string); v != "1" {
			t.Errorf("hsm_up{device=%q} = %v, want 1", dev, series.Value[1])
		}
		if series.Metric["instance"] != target {
			t.Errorf("hsm_up{device=%q} instance %q, want %q", dev, series.Metric["instance"], target)
		}
	}
	for i, tok := range s.fleet.Tokens {
		dev := fmt.Sprintf("hsm-%d", i)
		if serial, ok := got[dev]; !ok {
			t.Errorf("no hsm_up series for %s", dev)
		} else if serial != tok.Serial {
			t.Errorf("hsm_up{device=%q} serial %q, want %q", dev, serial, tok.Serial)
		}
	}
	if up := promQuery(t, base, `up{job="hsm-agent"}`); len(up.Data.Result) != 1 || up.Data.Result[0].Value[1] != "1" {
		t.Errorf("up{job=\"hsm-agent\"} = %+v, want one series of 1", up.Data.Result)
	}

	// A confirmed fault opens a case and its events reach the spool desk,
	// so the case, outbox and desk metrics have samples too.
	if err := s.faults.Set(s.fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "a case delivered to the spool desk", func() bool {
		return strings.Contains(ra.metrics(t), `hsm_desk_deliveries_total{desk="ops",result="success"}`)
	})
	time.Sleep(2 * time.Second) // two more scrapes, so Prometheus stored them

	// Every allow-listed metric name (what the shipped rules and dashboard
	// may use) has a sample on the live page, and Prometheus ingested it.
	names, err := promcheck.ReadNameList(filepath.Join("..", "packaging", "prometheus", "metric-names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := ra.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	missing, err := promcheck.MissingFromExposition(strings.NewReader(body), names)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("allow-listed metrics without a sample on the live /metrics: %v", missing)
	}
	resp, err := http.Get(base + "/api/v1/label/__name__/values")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var values struct {
		Data []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&values); err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, n := range values.Data {
		stored[n] = true
	}
	var notStored []string
	for _, n := range names {
		if !stored[n] {
			notStored = append(notStored, n)
		}
	}
	sort.Strings(notStored)
	if len(notStored) > 0 {
		t.Errorf("allow-listed metrics Prometheus did not ingest: %v", notStored)
	}
}
