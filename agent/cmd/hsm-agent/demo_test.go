package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoReloadsOnSIGHUP: the demo is the daemon a newcomer runs first,
// and SIGHUP must reload it as it reloads `run`, never kill it.
func TestDemoReloadsOnSIGHUP(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	d := startDaemonCmd(t, exec.Command(binary, "demo", "--dir", dir, "--listen", freePort(t)))
	waitUntilT(t, 60*time.Second, "the demo's first poll", func() bool { return strings.Contains(d.String(), `"device healthy"`) })
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntilT(t, 30*time.Second, "the reload", func() bool { return strings.Contains(d.String(), "configuration reloaded") })
	select {
	case <-d.exited:
		t.Fatalf("the demo exited on SIGHUP: %v", d.err)
	case <-time.After(500 * time.Millisecond):
	}
}
