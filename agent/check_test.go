package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// runCheck runs `check` against the site's configuration.
func runCheck(t *testing.T, configFile string, asJSON bool) (int, string, string) {
	t.Helper()
	cfg, err := config.Load(configFile)
	if err != nil {
		return ExitUnknown, "", err.Error()
	}
	var out, errOut bytes.Buffer
	code := CLI.CheckConfig(context.Background(), cfg, testWorker(), asJSON, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckExitCodes(t *testing.T) {
	s := newSite(t, 2, "slow_threshold: 500ms\nprobe_timeout: 3s")
	serial := s.fleet.Tokens[1].Serial
	cases := []struct {
		name   string
		module bool // a module-wide fault
		fault  pkcs11test.Fault
		value  string
		want   int
		state  string
	}{
		{"all healthy", false, "", "", ExitOK, "healthy"},
		{"slow token is degraded", false, pkcs11test.FaultSlow, "700:C_GenerateRandom", ExitDegraded, "degraded"},
		{"device error is failed", false, pkcs11test.FaultDeviceError, "C_GenerateRandom", ExitFailed, "failed"},
		{"missing token", false, pkcs11test.FaultMissing, "", ExitFailed, "missing"},
		{"library cannot initialise", true, pkcs11test.FaultInitError, "", ExitUnknown, "module_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.faults.ClearAll(); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.fault == "":
			case tc.module:
				if err := s.faults.SetModule(tc.fault, tc.value); err != nil {
					t.Fatal(err)
				}
			default:
				if err := s.faults.Set(serial, tc.fault, tc.value); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := runCheck(t, s.config, true)
			if code != tc.want {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			var reports []DeviceReport
			if err := json.Unmarshal([]byte(out), &reports); err != nil {
				t.Fatalf("check --json output is not a JSON array: %v\n%s", err, out)
			}
			if len(reports) != 2 || reports[1].Serial != serial || reports[1].State != tc.state {
				t.Fatalf("hsm-1 should be %s; got %+v", tc.state, reports)
			}
		})
	}
	_ = s.faults.ClearAll()
	code, table, _ := runCheck(t, s.config, false)
	if code != ExitOK || !strings.Contains(table, "DEVICE") || !strings.Contains(table, serial) {
		t.Errorf("table output (exit %d):\n%s", code, table)
	}
}

func TestConfigCheck(t *testing.T) {
	s := newSite(t, 1, "")
	var out, errOut bytes.Buffer
	if code := CLI.ConfigCheck(s.config, &out, &errOut); code != 0 {
		t.Fatalf("valid config: exit %d: %s", code, errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("listen: x\nunknown_thing: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := CLI.ConfigCheck(bad, &out, &errOut); code != 1 {
		t.Fatalf("invalid config: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "unknown_thing") || !strings.Contains(errOut.String(), "bad.yml:2: unknown_thing") {
		t.Errorf("error should name the field and line: %s", errOut.String())
	}
}
