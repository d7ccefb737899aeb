package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// checkStates runs `check --json` and returns the exit code and the state
// and reason of every device by name.
func checkStates(t *testing.T, configFile string) (int, map[string]DeviceReport) {
	t.Helper()
	code, out, errOut := runCheck(t, configFile, true)
	var reports []DeviceReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("check --json: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	byName := map[string]DeviceReport{}
	for _, r := range reports {
		byName[r.Device] = r
	}
	return code, byName
}

func wantStates(t *testing.T, got map[string]DeviceReport, want map[string]string) {
	t.Helper()
	for dev, state := range want {
		if got[dev].State != state {
			t.Errorf("%s: %s (%s), want %s", dev, got[dev].State, got[dev].Reason, state)
		}
	}
}

// A vendor library that prints a banner and chatters on stdout and stderr
// at every call: `check` reports every device healthy.
func TestCheckChattyLibraryIsHealthy(t *testing.T) {
	s := newSite(t, 3, "")
	if err := s.faults.SetModule(pkcs11test.FaultChatter, ""); err != nil {
		t.Fatal(err)
	}
	code, got := checkStates(t, s.config)
	wantStates(t, got, map[string]string{"hsm-0": "healthy", "hsm-1": "healthy", "hsm-2": "healthy"})
	if code != ExitOK {
		t.Errorf("exit %d, want %d", code, ExitOK)
	}
}

// One crashing token (every call on it aborts): `check` charges that
// device alone, with the signal and the call.
func TestCheckCrashingTokenIsOneDevice(t *testing.T) {
	s := newSite(t, 3, "")
	if err := s.faults.Set(s.serial(1), pkcs11test.FaultCrash, ""); err != nil {
		t.Fatal(err)
	}
	code, got := checkStates(t, s.config)
	wantStates(t, got, map[string]string{"hsm-0": "healthy", "hsm-1": "module_error", "hsm-2": "healthy"})
	if r := got["hsm-1"].Reason; !strings.Contains(r, "SIGABRT in C_GetTokenInfo") {
		t.Errorf("hsm-1 reason %q, want the signal and the call", r)
	}
	// The token's own crash is that device failing (2), not a module that
	// could not be checked (3).
	if code != ExitFailed {
		t.Errorf("exit %d, want %d (the crashed device failed)", code, ExitFailed)
	}
}

// Slow tokens (under slow_threshold, together past probe_timeout; two of
// three, so every self-test's slot walk passes one) are charged for their
// own time: three runs of `check` out of three report every device healthy.
func TestCheckSlowTokensDoNotFailNeighbours(t *testing.T) {
	s := pinSite(t, 3, "probe_timeout: 2s\nslow_threshold: 1500ms")
	for i := range 2 {
		if err := s.faults.Set(s.serial(i), pkcs11test.FaultSlow, "1200:C_GetTokenInfo"); err != nil {
			t.Fatal(err)
		}
	}
	for run := range 3 {
		code, got := checkStates(t, s.config)
		wantStates(t, got, map[string]string{"hsm-0": "healthy", "hsm-1": "healthy", "hsm-2": "healthy"})
		if code != ExitOK {
			t.Fatalf("run %d: exit %d, want %d", run+1, code, ExitOK)
		}
	}
}

// pinSite is newSite with a pin_file (the right PIN) on every device, so
// that every poll runs the login_sign self-test.
func pinSite(t *testing.T, n int, extra string) *e2eSite {
	t.Helper()
	s := newE2ESite(t, n)
	pin := filepath.Join(s.dir, "pin")
	if err := os.WriteFile(pin, []byte(pkcs11test.DefaultPIN), 0o600); err != nil {
		t.Fatal(err)
	}
	var devices strings.Builder
	for i := range n {
		devices.WriteString(s.device(i, fmt.Sprintf("hsm-%d", i),
			fmt.Sprintf("environment: production, pool: payments, pin_file: %q, contract: {id: C-%d, tier: premium, expires: 2030-01-31, region: emea}", pin, i)))
	}
	s.write(t, siteConfig{
		Settings: extra,
		Pools:    "  - {name: payments, min_healthy: 1}\n",
		Devices:  devices.String(),
		Desks:    fmt.Sprintf("  - {name: ops, type: spool, role: internal, dir: %q}\n", filepath.Join(s.dir, "spool")),
	}, []string{"listen: 127.0.0.1:0", "poll_interval: 300ms", "probe_timeout: 2s"})
	return s
}

// The daemon with a chatty library, a crashing token and slow tokens: only
// the crashing token's device leaves healthy, poll after poll.
func TestDaemonChargesOnlyTheFaultyToken(t *testing.T) {
	s := pinSite(t, 4, "probe_timeout: 2s\nslow_threshold: 1500ms")
	if err := s.faults.SetModule(pkcs11test.FaultChatter, ""); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.faults.Set(s.serial(i), pkcs11test.FaultSlow, "1200:C_GetTokenInfo"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.faults.Set(s.serial(3), pkcs11test.FaultSegv, ""); err != nil {
		t.Fatal(err)
	}
	ra := startAgent(t, s.config)
	state := func(m, dev, st string) bool {
		return strings.Contains(m, fmt.Sprintf(`hsm_device_state{device=%q,state=%q} 1`, dev, st))
	}
	waitUntil(t, 30*time.Second, "hsm-3 module_error", func() bool { return state(ra.metrics(t), "hsm-3", "module_error") })
	// Two more full polls: the others stay healthy throughout.
	polls := strings.Count(ra.logs.String(), "SIGSEGV in C_GetTokenInfo")
	waitUntil(t, 30*time.Second, "two more polls", func() bool {
		return strings.Count(ra.logs.String(), "SIGSEGV in C_GetTokenInfo") >= polls+2
	})
	m := ra.metrics(t)
	for _, dev := range []string{"hsm-0", "hsm-1", "hsm-2"} {
		if !state(m, dev, "healthy") {
			t.Errorf("%s is not healthy in the daemon's metrics", dev)
		}
	}
	if strings.Contains(ra.logs.String(), "rip ") && strings.Contains(m, "rip ") {
		t.Error("the crash dump reached the metrics")
	}
}
