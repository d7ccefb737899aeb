package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exit codes against real tokens, the table and the JSON are tested
// with agent's sites (agent/check_test.go, through agent.CLI).

func TestCheckInvalidConfigCannotCheck(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(file, []byte("poll_interval: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Check(context.Background(), []string{"--config", file}, &out, &errOut); code != ExitUnknown {
		t.Fatalf("exit %d, want %d", code, ExitUnknown)
	}
	if !strings.Contains(errOut.String(), "bad.yml") || !strings.Contains(errOut.String(), "poll_interval") {
		t.Errorf("error should name the file and field: %s", errOut.String())
	}
}

func TestCheckBadFlagCannotCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Check(context.Background(), []string{"--no-such-flag"}, &out, &errOut); code != ExitUnknown {
		t.Fatalf("exit %d, want %d", code, ExitUnknown)
	}
	if !strings.Contains(errOut.String(), "no-such-flag") {
		t.Errorf("stderr should name the flag: %s", errOut.String())
	}
}
