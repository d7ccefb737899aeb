package pkcs11test

import "testing"

// The package's own tests cannot import pkcs11testtb (it imports this
// package); these are its two helpers over the same functions.

func newTestFleet(t testing.TB, n int) *Fleet {
	t.Helper()
	f, err := CreateFleet(t.TempDir(), n, "token")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func testFaultModule(t testing.TB) string {
	t.Helper()
	path, err := CachedFaultModule()
	if err != nil {
		t.Fatalf("pkcs11test: fault module: %v", err)
	}
	return path
}
