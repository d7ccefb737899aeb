package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// binary is the hsm-agent built once for the tests in this file.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hsm-agent-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "hsm-agent")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build hsm-agent: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func hsmAgent(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := hsmAgent(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range []string{"run", "check", "config check", "demo", "version", "outbox", "outbox retry"} {
		if !strings.Contains(out, "hsm-agent "+cmd) {
			t.Errorf("--help does not list %q", cmd)
		}
	}
	if code, out, _ := hsmAgent(t, "version"); code != 0 || !strings.HasPrefix(out, "hsm-agent ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if code, _, errOut := hsmAgent(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
}

// TestCheckThroughRealWorker runs the real binary, whose probe-worker
// subcommand loads the fault module over SoftHSM2.
func TestCheckThroughRealWorker(t *testing.T) {
	cfgFile, fleet, faults := caseSite(t, 2, "127.0.0.1:0", nil, "")
	code, out, errOut := hsmAgent(t, "check", "--config", cfgFile)
	if code != 0 || !strings.Contains(out, fleet.Tokens[0].Serial) {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, errOut)
	}
	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultDeviceError, ""); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := hsmAgent(t, "check", "--config", cfgFile, "--json"); code != 2 || !strings.Contains(out, `"state": "failed"`) {
		t.Fatalf("check with a failed token: exit %d\n%s", code, out)
	}
	if code, out, _ := hsmAgent(t, "config", "check", cfgFile); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("config check: exit %d %s", code, out)
	}
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitMetrics(t *testing.T, url, want string, timeout time.Duration) {
	t.Helper()
	waitUntilT(t, timeout, fmt.Sprintf("metrics showing %q", want), func() bool {
		_, body, err := get(url + "/metrics")
		return err == nil && strings.Contains(body, want)
	})
}

// TestDaemonSignalsAndCrashRecovery runs `hsm-agent run`: a crashing
// PKCS#11 library gives module_error without taking the daemon down, the
// next poll recovers, SIGHUP with a bad file keeps the old config, and
// SIGTERM stops it cleanly.
func TestDaemonSignalsAndCrashRecovery(t *testing.T) {
	listen := freePort(t)
	cfgFile, fleet, faults := caseSite(t, 2, listen, nil, "")
	d := startDaemon(t, cfgFile)
	url := "http://" + listen
	up0 := fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, fleet.Tokens[0].Serial)
	waitMetrics(t, url, up0, 20*time.Second)

	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultCrash, "C_GenerateRandom"); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, `hsm_device_state{device="hsm-0",state="module_error"} 1`, 10*time.Second)
	if code, _, err := get(url + "/-/healthy"); err != nil || code != 200 {
		t.Fatalf("daemon unhealthy after a worker crash: %d %v", code, err)
	}
	if err := faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, up0, 10*time.Second)

	good, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, append(good, "poll_interval: never\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, "hsm_agent_config_last_reload_successful 0", 10*time.Second)
	waitMetrics(t, url, up0, 5*time.Second)

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		if d.err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", d.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
	if strings.Contains(d.String(), "panic") {
		t.Errorf("daemon logs contain a panic:\n%s", d.String())
	}
}
