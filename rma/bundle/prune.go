package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// bundleName matches the names Build gives: <timestamp>-<id>[-N].tar.gz.
var bundleName = regexp.MustCompile(`^(\d{8}T\d{6}(?:\.\d{3})?Z)-.+\.tar\.gz$`)

// staleTemp is the age from which Prune removes a temporary file left by an
// interrupted Build.
const staleTemp = time.Hour

// Prune keeps the newest keep bundles of a device (DefaultRetention when
// keep <= 0) in <dir>/<device> and deletes the older ones, newest judged by
// the timestamp in the name, then by modification time. Files that are not
// bundles are left alone, except temporary files of interrupted builds older
// than an hour. A device without bundles is not an error.
//
// inUse are the bundles that must stay whatever their age: those an
// undelivered or approval-held outbox row still references (the store's
// BundlesInUse). A path names a bundle by its device directory and file
// name, so relative and absolute forms of the same state_dir both match.
func Prune(dir, device string, keep int, inUse ...string) error {
	if keep <= 0 {
		keep = DefaultRetention
	}
	devDir, err := deviceDir(dir, device)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(devDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bundle: pruning %s: %w", devDir, err)
	}
	type bundle struct {
		name, stamp string
		mod         time.Time
	}
	var bundles []bundle
	var errs []error
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
			if time.Since(info.ModTime()) > staleTemp {
				if err := os.Remove(filepath.Join(devDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
			continue
		}
		m := bundleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		bundles = append(bundles, bundle{name: e.Name(), stamp: m[1], mod: info.ModTime()})
	}
	sort.Slice(bundles, func(i, j int) bool {
		a, b := bundles[i], bundles[j]
		if a.stamp != b.stamp {
			return a.stamp > b.stamp
		}
		if !a.mod.Equal(b.mod) {
			return a.mod.After(b.mod)
		}
		return a.name > b.name
	})
	held := map[string]bool{}
	for _, p := range inUse {
		if filepath.Base(filepath.Dir(p)) == device {
			held[filepath.Base(p)] = true
		}
	}
	for _, b := range bundles[min(keep, len(bundles)):] {
		if held[b.name] {
			continue // a desk still has to get it
		}
		if err := os.Remove(filepath.Join(devDir, b.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bundle: pruning %s: %w", devDir, errors.Join(errs...))
	}
	return nil
}
