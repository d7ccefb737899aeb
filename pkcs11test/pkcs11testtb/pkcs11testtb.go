// Package pkcs11testtb holds the testing.TB helpers over the pkcs11test
// fixtures: a fleet in the test's temp dir and the fault module built once
// per test binary, each failing the test when it cannot be made. The
// fixtures themselves live in pkcs11test, which does not import package
// testing, so the demo can use them without linking it into the daemon.
package pkcs11testtb

import (
	"testing"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// NewFleet creates a fleet of n tokens (label prefix "token") in t.TempDir()
// and fails the test if that does not work.
func NewFleet(t testing.TB, n int) *pkcs11test.Fleet {
	t.Helper()
	f, err := pkcs11test.CreateFleet(t.TempDir(), n, "token")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// FaultModule returns the path of the fault module, built once per test
// binary into the per-user cache (pkcs11test.CachedFaultModule), and fails
// the test if the module cannot be built.
func FaultModule(t testing.TB) string {
	t.Helper()
	path, err := pkcs11test.CachedFaultModule()
	if err != nil {
		t.Fatalf("pkcs11test: fault module: %v", err)
	}
	return path
}
