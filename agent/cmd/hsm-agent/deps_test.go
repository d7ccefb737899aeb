package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// testOnly reports whether pkg exists for tests: the daemon links none of
// them (a test helper imported by the daemon drags in package testing, its
// flags and its code).
func testOnly(pkg string) bool {
	return pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
		slices.Contains([]string{
			"net/http/httptest",
			"github.com/hsm-agent/hsm-agent/internal/testutil",
			"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb",
		}, pkg)
}

// TestDaemonLinksNoTestCode lists the daemon's dependencies as the linker
// sees them (go list -deps) and fails on package testing or another
// test-only package, naming the packages that import it.
func TestDaemonLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 50 || !strings.HasPrefix(lines[len(lines)-1], "github.com/hsm-agent/hsm-agent/agent/cmd/hsm-agent:") {
		t.Fatalf("go list -deps did not list the daemon's dependency graph:\n%s", out)
	}
	importers := map[string][]string{}
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Fields(imports) {
			importers[imp] = append(importers[imp], pkg)
		}
	}
	for _, line := range lines {
		if pkg, _, _ := strings.Cut(line, ":"); testOnly(pkg) {
			t.Errorf("the daemon links the test-only package %s (imported by %s)", pkg, strings.Join(importers[pkg], ", "))
		}
	}
}
