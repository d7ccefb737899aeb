package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// TestSecondDaemonOnStateDirExits: a second `run` on the same state_dir
// exits at once, naming the PID of the daemon that holds the lock, and the
// CLI read paths still work while the daemon runs (issue 8).
func TestSecondDaemonOnStateDirExits(t *testing.T) {
	t.Parallel()
	cfgFile, _, _ := caseSite(t, 1, freePort(t), nil, "")
	first := startDaemon(t, cfgFile)
	waitUntilT(t, 20*time.Second, "the first daemon's lock", func() bool {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(cfgFile), "state", "hsm-agent.lock"))
		return err == nil && strings.TrimSpace(string(b)) == fmt.Sprint(first.cmd.Process.Pid)
	})

	// Another listen address, so that only the state directory is shared.
	other := filepath.Join(t.TempDir(), "other.yml")
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	listenLine := text[strings.Index(text, "listen: "):]
	listenLine = listenLine[:strings.Index(listenLine, "\n")]
	if err := os.WriteFile(other, []byte(strings.Replace(text, listenLine, fmt.Sprintf("listen: %q", freePort(t)), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut, _ := runFails(t, other)
	if !strings.Contains(errOut, fmt.Sprintf("another hsm-agent (PID %d)", first.cmd.Process.Pid)) || !strings.Contains(errOut, "state_dir") {
		t.Errorf("the second daemon should name the first one's PID %d and the state_dir:\n%s", first.cmd.Process.Pid, errOut)
	}
	select {
	case <-first.exited:
		t.Fatalf("the first daemon stopped: %v", first.err)
	default:
	}
	if code, out, errOut := hsmAgent(t, "cases", "--config", cfgFile); code != 0 {
		t.Errorf("`cases` while the daemon runs: exit %d %s%s", code, out, errOut)
	}
	if code, out, errOut := hsmAgent(t, "check", "--config", cfgFile); code != 0 {
		t.Errorf("`check` while the daemon runs: exit %d %s%s", code, out, errOut)
	}
}

// TestStateDBDeletedOrReplacedStopsDaemon: the state database deleted or
// replaced under a running daemon is noticed within a poll round; the
// daemon logs it and exits with a status systemd restarts (not 78).
func TestStateDBDeletedOrReplacedStopsDaemon(t *testing.T) {
	t.Parallel()
	cfgFile, _, _ := caseSite(t, 1, freePort(t), nil, "")
	db := filepath.Join(filepath.Dir(cfgFile), "state", "hsm-agent.db")
	for _, how := range []string{"deleted", "replaced"} {
		d := startDaemon(t, cfgFile)
		waitUntilT(t, 20*time.Second, "the daemon's first poll", func() bool {
			return strings.Contains(d.String(), `"device healthy"`)
		})
		switch how {
		case "deleted":
			if err := os.Remove(db); err != nil {
				t.Fatal(err)
			}
		case "replaced":
			b, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(db+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(db+".new", db); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the daemon kept running on a state database that is gone:\n%s", how, d.String())
		}
		code := d.cmd.ProcessState.ExitCode()
		if code == 0 || code == 78 {
			t.Errorf("%s: exit status %d, want non-zero and not 78 (systemd must restart it)", how, code)
		}
		if logs := d.String(); !strings.Contains(logs, "state database lost") || !strings.Contains(logs, how) || !strings.Contains(logs, db) {
			t.Errorf("%s: the log should say the state database %s was %s:\n%s", how, db, how, logs)
		}
	}
}

// TestDiagnosticsCommandDiesWithDaemon: a diagnostics command still running
// when the daemon is killed dies with it (Pdeathsig), instead of living on
// as an orphan (issue 8).
func TestDiagnosticsCommandDiesWithDaemon(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, false)
	pidFile := filepath.Join(t.TempDir(), "diag.pid")
	extra := fmt.Sprintf("diagnostics:\n  commands:\n    - {name: slow, command: [/bin/sh, -c, 'echo $$ > %s; exec sleep 300'], timeout: 10m}\n", pidFile)
	cfgFile, fleet, faults := caseSite(t, 1, freePort(t), desk, extra)
	d := startDaemon(t, cfgFile)
	waitUntilT(t, 20*time.Second, "the daemon's first poll", func() bool {
		return strings.Contains(d.String(), `"device healthy"`)
	})
	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = faults.ClearAll() })
	var pid int
	waitUntilT(t, 60*time.Second, "the diagnostics command of the case's bundle", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	})
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	waitUntilT(t, 20*time.Second, fmt.Sprintf("diagnostics command (pid %d) to die with the daemon", pid), func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true // gone
		}
		f := strings.Fields(string(b)[strings.LastIndex(string(b), ")")+1:])
		return len(f) > 0 && f[0] == "Z" // dead, not yet reaped by its new parent
	})
}
