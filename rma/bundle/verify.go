package bundle

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// maxManifestBytes bounds the manifest Verify reads.
const maxManifestBytes = 16 << 20

// Verify re-reads a bundle and checks it against its manifest: every file
// listed is present with the listed size and SHA-256, and no other file is
// there. The error names each file that does not match. The manifest is
// returned whenever it could be read, also with a mismatch.
func Verify(p string) (Manifest, error) {
	f, err := os.Open(p)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", p, err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: not a gzip file: %w", p, err)
	}
	type sum struct {
		size int64
		sha  string
	}
	got := map[string]sum{}
	var manifest []byte
	var problems []error
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle %s: corrupt archive: %w", p, err)
		}
		name := hdr.Name
		if hdr.Typeflag != tar.TypeReg {
			problems = append(problems, fmt.Errorf("file %q: not a regular file (tar type %q)", name, hdr.Typeflag))
			continue
		}
		if name == "" || path.IsAbs(name) || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
			problems = append(problems, fmt.Errorf("file %q: unsafe name in archive", name))
			continue
		}
		if _, dup := got[name]; dup || (name == ManifestName && manifest != nil) {
			problems = append(problems, fmt.Errorf("file %q: appears twice in the archive", name))
			continue
		}
		if name == ManifestName {
			manifest, err = io.ReadAll(io.LimitReader(tr, maxManifestBytes+1))
			if err != nil {
				return Manifest{}, fmt.Errorf("bundle %s: reading %s: %w", p, ManifestName, err)
			}
			if len(manifest) > maxManifestBytes {
				return Manifest{}, fmt.Errorf("bundle %s: %s is larger than %d bytes", p, ManifestName, maxManifestBytes)
			}
			continue
		}
		sha, n, err := hashReader(tr)
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle %s: corrupt archive reading %q: %w", p, name, err)
		}
		got[name] = sum{n, sha}
	}
	// Read to the end so that gzip checks its CRC and length trailer.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: corrupt gzip stream: %w", p, err)
	}
	if manifest == nil {
		return Manifest{}, fmt.Errorf("bundle %s: no %s in the archive; it is not an hsm-agent bundle or was altered", p, ManifestName)
	}
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %s is not valid JSON: %w", p, ManifestName, err)
	}
	listed := map[string]bool{}
	for _, fe := range m.Files {
		if listed[fe.Name] {
			problems = append(problems, fmt.Errorf("file %q: listed twice in %s", fe.Name, ManifestName))
			continue
		}
		listed[fe.Name] = true
		g, ok := got[fe.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Errorf("file %q: listed in %s but missing from the archive", fe.Name, ManifestName))
		case g.size != fe.Size:
			problems = append(problems, fmt.Errorf("file %q: size %d bytes, %s says %d", fe.Name, g.size, ManifestName, fe.Size))
		case g.sha != fe.SHA256:
			problems = append(problems, fmt.Errorf("file %q: SHA-256 %s, %s says %s", fe.Name, g.sha, ManifestName, fe.SHA256))
		}
	}
	var extra []string
	for name := range got {
		if !listed[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		problems = append(problems, fmt.Errorf("file %q: in the archive but not listed in %s", name, ManifestName))
	}
	if len(problems) > 0 {
		return m, fmt.Errorf("bundle %s does not match its manifest (altered or corrupted after it was built): %w", p, errors.Join(problems...))
	}
	return m, nil
}
