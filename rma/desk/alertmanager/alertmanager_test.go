package alertmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/alertmanager"
)

// startAlertmanager runs Debian's prometheus-alertmanager on loopback and
// returns its base URL once it is ready. It fails (never skips) when the
// package is missing.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		t.Fatalf("prometheus-alertmanager is not installed: install Debian's package prometheus-alertmanager (scripts/install-deps.sh does): %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--config.file", cfg, "--web.listen-address", addr, "--storage.path", filepath.Join(dir, "data"), "--cluster.listen-address=")
	logs, err := os.Create(filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("alertmanager log:\n%s", b)
		}
	})
	base := "http://" + addr
	waitFor(t, 60*time.Second, "alertmanager ready", func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// gettable is what GET /api/v2/alerts returns per alert (the fields used).
type gettable struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func alerts(t *testing.T, base, caseID string) []gettable {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?filter=" + url.QueryEscape(fmt.Sprintf("case=%q", caseID)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []gettable
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("GET /api/v2/alerts: %s: %v", b, err)
	}
	return out
}

func send(t *testing.T, d *alertmanager.Desk, ev rma.DeskEvent) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Send(context.Background(), desk.Message{Body: b}); err != nil {
		t.Fatalf("%s: %v", ev.Event, err)
	}
}

// TestCaseAlertAndResolve: against a real Alertmanager, an open case is an
// active HSMCase alert with its labels and annotations and an endsAt the
// horizon ahead; an update re-posts the same alert (no second one); the
// close resolves it.
func TestCaseAlertAndResolve(t *testing.T) {
	t.Parallel()
	base := startAlertmanager(t)
	d, err := alertmanager.New(config.Desk{Name: "am", Type: config.DeskAlertmanager, Role: config.RoleInternal, URL: base + "/"},
		slog.New(slog.DiscardHandler), alertmanager.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	c := rma.Case{ID: "20260301-SN77-hardware", Serial: "SN77", Device: "hsm-7", Severity: 1, State: rma.StateOpen,
		Summary: "hsm-7 is missing", Description: "Device: hsm-7, serial SN77", Environment: config.EnvProduction,
		Impact: "pool payments has 1 healthy member left", Tier: config.TierPremium, OpenedAt: now.Add(-time.Minute)}
	send(t, d, rma.DeskEvent{Event: rma.EventOpened, Sequence: 1, SentAt: now.Format(time.RFC3339), Case: c})
	var got []gettable
	waitFor(t, 30*time.Second, "the case's alert in /api/v2/alerts", func() bool {
		got = active(alerts(t, base, c.ID))
		return len(got) == 1
	})
	a := got[0]
	want := map[string]string{"alertname": "HSMCase", "severity": "critical", "device": "hsm-7", "serial": "SN77", "case": c.ID}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
		}
	}
	if a.Status.State != "active" || a.Annotations["summary"] != "[SEV1] hsm-7 is missing" || !strings.Contains(a.Annotations["description"], "pool payments has 1 healthy member left") {
		t.Errorf("alert: %+v", a)
	}
	if d := a.EndsAt.Sub(now); d < alertmanager.Horizon-time.Minute || d > alertmanager.Horizon+time.Minute {
		t.Errorf("endsAt %s is %s after the event, want about %s", a.EndsAt, d, alertmanager.Horizon)
	}

	c.Severity = 2
	send(t, d, rma.DeskEvent{Event: rma.EventUpdated, Sequence: 2, SentAt: time.Now().UTC().Format(time.RFC3339), Case: c})
	waitFor(t, 30*time.Second, "the re-posted alert with severity error", func() bool {
		got = active(alerts(t, base, c.ID))
		return len(got) == 1 && got[0].Labels["severity"] == "error"
	})

	c.State, c.ClosedAt = rma.StateClosed, time.Now().UTC()
	send(t, d, rma.DeskEvent{Event: rma.EventClosed, Sequence: 3, SentAt: c.ClosedAt.Format(time.RFC3339), Case: c})
	waitFor(t, 30*time.Second, "the alert resolved", func() bool {
		return len(active(alerts(t, base, c.ID))) == 0
	})
}

// active keeps the alerts still firing.
func active(as []gettable) []gettable {
	var out []gettable
	for _, a := range as {
		if a.Status.State == "active" && a.EndsAt.After(time.Now()) {
			out = append(out, a)
		}
	}
	return out
}
