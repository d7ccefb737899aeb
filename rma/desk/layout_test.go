package desk_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSeamImportsNoDeskKind: rma/desk is the seam. The desk kinds and the
// outbox worker (its sub-packages) import it, never the reverse, so a new
// desk kind never touches it.
func TestSeamImportsNoDeskKind(t *testing.T) {
	t.Parallel()
	const sub = "github.com/hsm-agent/hsm-agent/rma/desk/"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, sub) {
				t.Errorf("%s imports %s: the seam must not import a desk kind or the outbox (they import it)", name, path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source file checked")
	}
}
