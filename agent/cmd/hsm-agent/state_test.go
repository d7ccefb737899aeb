package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
