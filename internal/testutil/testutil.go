// Package testutil holds the small helpers the tests of several packages
// share: a goroutine-safe log buffer and the re-exec trick that lets a test
// binary act as `hsm-agent probe-worker`.
package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers (loggers,
// child processes) and readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WorkerEnv, set to "1", makes a test binary act as the probe worker.
const WorkerEnv = "HSM_AGENT_TEST_WORKER"

// RunWorkerIfAsked is called first in TestMain: when the test binary was
// started as a probe worker it serves that role and exits.
func RunWorkerIfAsked() {
	if os.Getenv(WorkerEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "probe-worker" { // the default worker command: this executable's probe-worker
			args = args[1:]
		}
		os.Exit(p11.Main(args, os.Stderr))
	}
}

// WorkerCommand returns the command that starts this test binary as a
// probe worker (its children inherit the environment t sets).
func WorkerCommand(t testing.TB) []string {
	t.Setenv(WorkerEnv, "1")
	return []string{os.Args[0]}
}

// Untar returns every file of a tar.gz (a diagnostics bundle) by name.
func Untar(tb testing.TB, tgz []byte) map[string][]byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		tb.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		files[h.Name] = b
	}
}
