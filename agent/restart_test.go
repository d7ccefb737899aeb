package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// runStoppable runs the agent in-process like startE2E, and returns a stop
// function that shuts it down and waits for it (a restart).
func runStoppable(t *testing.T, s *e2eSite) (*runningAgent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{reload: make(chan struct{}, 1), logs: &syncBuffer{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		ra.done <- Run(ctx, Options{ConfigFile: s.config, Logger: NewLogger(ra.logs, -4), Reload: ra.reload,
			WorkerCommand: testWorker(), Started: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		ra.url = "http://" + a
	case err := <-ra.done:
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not start listening within 20s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-ra.done:
			if err != nil {
				t.Errorf("agent shutdown: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not shut down within 20s")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", ra.logs.String())
		}
	}
	t.Cleanup(stop)
	waitUntil(t, 20*time.Second, "the first poll (/-/ready)", func() bool {
		code, _, err := httpGet(ra.url + "/-/ready")
		return err == nil && code == 200
	})
	return ra, stop
}

// eventsOf lists the desk events of one type.
func eventsOf(calls []deskCall, event string) []deskCall {
	return where(calls, func(c deskCall) bool { return c.Event.Event == event })
}

// stateFiles lists the files of the state directory with size and mtime.
func stateFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %s", e.Name(), fi.Size(), fi.ModTime()))
	}
	slices.Sort(out)
	return out
}

// checkReports runs `check --json` on the site and decodes its reports.
func checkReports(t *testing.T, s *e2eSite) map[string]DeviceReport {
	t.Helper()
	code, out, errOut := runCheck(t, s.config, true)
	if code != ExitFailed {
		t.Errorf("check: exit %d, want %d\n%s\n%s", code, ExitFailed, out, errOut)
	}
	var reps []DeviceReport
	if err := json.Unmarshal([]byte(out), &reps); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	byName := map[string]DeviceReport{}
	for _, r := range reps {
		byName[r.Device] = r
	}
	return byName
}

// wantAttributed checks hsm-a (serial unreadable) is failed under its own
// serial and hsm-b (removed) is missing.
func wantAttributed(t *testing.T, where string, devs map[string]DeviceReport) {
	t.Helper()
	a, b := devs["hsm-a"], devs["hsm-b"]
	if a.State != "failed" || strings.Contains(a.Reason, "may be this one") || !strings.Contains(a.Reason, "token_info") {
		t.Errorf("%s: hsm-a (device_error) should be failed by its own token_info check, got %s: %s", where, a.State, a.Reason)
	}
	if b.State != "missing" {
		t.Errorf("%s: hsm-b (removed) should stay missing, got %s: %s", where, b.State, b.Reason)
	}
	if c := devs["hsm-c"]; c.State != "healthy" {
		t.Errorf("%s: hsm-c should be healthy, got %s: %s", where, c.State, c.Reason)
	}
}

// TestRestartKeepsAttribution (issue 7 item 4): one token's serial can no
// longer be read (device_error on every call), another is removed; after
// a restart the agent still names the first by the slot it was last read
// in (from the state database), so the removed one stays missing: no
// second vendor ticket, no false case.cleared. `check` does the same from
// the database without writing it.
func TestRestartKeepsAttribution(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 3)
	s.write(t, siteConfig{Devices: s.device(0, "hsm-a", devPremium) + s.device(1, "hsm-b", devPremium) +
		s.device(2, "hsm-c", devPremium)}, testTimings)
	ra, stop := runStoppable(t, s)
	ra.waitHealthy(t, "hsm-a", "hsm-b", "hsm-c")

	setFault(t, s, 0, pkcs11test.FaultDeviceError, "")
	setFault(t, s, 1, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "two vendor cases (hsm-a failed, hsm-b missing)", func() bool {
		return len(eventsOf(s.desk.accepted("vendor"), rma.EventOpened)) >= 2
	})
	wantAttributed(t, "first run", ra.devices(t))
	stop()

	opened := eventsOf(s.desk.accepted("vendor"), rma.EventOpened)
	keys := []string{rma.DedupKey(s.serial(0), rma.KindHardware, rma.ClassFailed), rma.DedupKey(s.serial(1), rma.KindHardware, rma.ClassMissing)}
	for _, k := range keys {
		if n := len(where(opened, func(c deskCall) bool { return c.Event.Case.DedupKey == k })); n != 1 {
			t.Fatalf("first run: want one vendor case %s, got:%s", k, describeCalls(opened))
		}
	}

	t.Run("check uses the state database read-only", func(t *testing.T) {
		dir := filepath.Join(s.dir, "state")
		before := stateFiles(t, dir)
		wantAttributed(t, "check", checkReports(t, s))
		if after := stateFiles(t, dir); !slices.Equal(before, after) {
			t.Errorf("check changed the state directory:\nbefore %v\nafter  %v", before, after)
		}
	})

	ra2, _ := runStoppable(t, s)
	// Watch every report for several confirmations' worth of polls and
	// rechecks: a false attribution shows at the first poll and a false
	// case within confirm_polls.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		wantAttributed(t, "after the restart", ra2.devices(t))
		if t.Failed() {
			break
		}
	}
	calls := s.desk.all("")
	if n := len(eventsOf(calls, rma.EventOpened)); n != len(opened)*2 { // vendor + internal per case
		t.Errorf("after the restart: want only the %d case.opened events of the first run, got %d:%s", len(opened)*2, n, describeCalls(calls))
	}
	if cl := eventsOf(calls, rma.EventCleared); len(cl) != 0 {
		t.Errorf("after the restart: false case.cleared:%s", describeCalls(cl))
	}
	if cases := ra2.allCases(t); len(cases) != 2 {
		t.Errorf("want the 2 cases of the first run, got %d: %+v", len(cases), cases)
	}
}

// TestCheckNeverCreatesTheStateDatabase: `check` before any daemon ran
// leaves no state directory behind.
func TestCheckNeverCreatesTheStateDatabase(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 1)
	s.write(t, siteConfig{Devices: s.device(0, "hsm-a", devPremium)}, testTimings)
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCheck(t, s.config, false); code != ExitOK {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
		t.Errorf("check created the state directory %s (%v)", cfg.StateDir, err)
	}
}
