package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// TestDiscoveryMode: modules but `devices: []` (what the package installs)
// runs: every token is reported as unexpected with its serial and label,
// `check` prints devices: entries that load when pasted into the file,
// and no case opens (issue 8).
func TestDiscoveryMode(t *testing.T) {
	s := newE2ESite(t, 2)
	s.write(t, siteConfig{Desks: "  - {name: ops, type: spool, role: internal, dir: " + filepath.Join(s.dir, "spool") + "}\n"},
		[]string{"listen: 127.0.0.1:0", "poll_interval: 300ms", "probe_timeout: 2s", "confirm_polls: 1"})
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	empty := strings.Replace(string(b), "devices:\n", "devices: []\n", 1)
	if err := os.WriteFile(s.config, []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}

	ra := startAgent(t, s.config)
	waitUntil(t, 15*time.Second, "both tokens unexpected", func() bool {
		return strings.Contains(ra.metrics(t), `hsm_unexpected_tokens{module="soft"} 2`)
	})
	// A few more polls (each gives a new probe duration): still no case.
	durations := map[string]bool{}
	waitUntil(t, 20*time.Second, "five more polls", func() bool {
		for _, line := range strings.Split(ra.metrics(t), "\n") {
			if strings.HasPrefix(line, `hsm_module_probe_duration_seconds{module="soft"}`) {
				durations[line] = true
			}
		}
		return len(durations) >= 5
	})
	logs := ra.logs.String()
	if !strings.Contains(logs, "discovery mode") {
		t.Error("the agent should say it runs in discovery mode")
	}
	for _, tok := range s.fleet.Tokens {
		if !strings.Contains(logs, tok.Serial) || !strings.Contains(logs, tok.Label) {
			t.Errorf("the logs lack token %s (label %s)", tok.Serial, tok.Label)
		}
	}
	if cases := ra.allCases(t); len(cases) != 0 {
		t.Errorf("discovery mode opened %d cases: %+v", len(cases), cases)
	}

	code, out, errOut := runCheck(t, s.config, false)
	if code != 0 {
		t.Fatalf("check in discovery mode: exit %d\n%s%s", code, out, errOut)
	}
	snippet := out[strings.Index(out, "devices:\n"):]
	pasted := strings.Replace(empty, "devices: []\n", snippet, 1)
	if err := os.WriteFile(s.config, []byte(pasted), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatalf("the printed entries do not load when pasted:\n%s\n%v", snippet, err)
	}
	if len(cfg.Devices) != len(s.fleet.Tokens) {
		t.Fatalf("pasted %d devices, want %d:\n%s", len(cfg.Devices), len(s.fleet.Tokens), snippet)
	}
	for i, tok := range s.fleet.Tokens {
		if d, ok := cfg.DeviceBySerial(tok.Serial); !ok || d.Module != "soft" {
			t.Errorf("token %d (%s): not in the pasted inventory: %+v", i, tok.Serial, cfg.Devices)
		}
	}
}
