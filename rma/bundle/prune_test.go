package bundle

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneKeepsBundlesInUse: bundles named in inUse survive pruning
// whatever their age, named by an absolute or a relative path; the others
// past the retention go.
func TestPruneKeepsBundlesInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var paths []string
	for i := range 5 {
		now := testNow.Add(time.Duration(i) * time.Hour)
		res, err := Build(context.Background(), dir, Input{Device: testDevice()}, Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, res.Path)
	}
	rel := filepath.Join("state", "bundles", "hsm-prod-01", filepath.Base(paths[1]))
	if err := Prune(dir, "hsm-prod-01", 1, paths[0], rel, filepath.Join(dir, "other-device", filepath.Base(paths[2]))); err != nil {
		t.Fatal(err)
	}
	for i, keep := range []bool{true, true, false, false, true} {
		_, err := os.Stat(paths[i])
		if exists := err == nil; exists != keep {
			t.Errorf("bundle %d: exists=%v, want %v", i, exists, keep)
		}
	}
}
