package bundle

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// toolTimeout bounds dpkg and uname.
const toolTimeout = 10 * time.Second

// osReleaseFiles are read in order; the first that exists wins.
var osReleaseFiles = []string{"/etc/os-release", "/usr/lib/os-release"}

// systemInfo is what system.txt says about the host.
type systemInfo struct {
	host      string
	os        string // PRETTY_NAME
	osRelease map[string]string
	kernel    string
	lib       *LibraryInfo
	errs      []string
}

func gatherSystem(ctx context.Context, in Input) systemInfo {
	si := systemInfo{host: in.Host}
	if si.host == "" {
		h, err := os.Hostname()
		if err != nil {
			si.errs = append(si.errs, "hostname: "+err.Error())
		}
		si.host = h
	}
	si.osRelease, si.os = readOSRelease()
	k, err := uname(ctx)
	if err != nil {
		si.errs = append(si.errs, "uname: "+err.Error())
	}
	si.kernel = k
	if in.Library != "" {
		si.lib = libraryInfo(ctx, in.Library)
	}
	return si
}

// readOSRelease parses os-release: KEY=VALUE lines, values maybe quoted.
func readOSRelease() (map[string]string, string) {
	for _, p := range osReleaseFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		kv := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			} else {
				v = strings.Trim(v, `"'`)
			}
			kv[k] = v
		}
		name := kv["PRETTY_NAME"]
		if name == "" {
			name = strings.TrimSpace(kv["NAME"] + " " + kv["VERSION"])
		}
		return kv, name
	}
	return nil, runtime.GOOS
}

// libraryInfo stats and hashes the library and asks dpkg which package owns it.
func libraryInfo(ctx context.Context, path string) *LibraryInfo {
	li := &LibraryInfo{Path: path}
	if r, err := filepath.EvalSymlinks(path); err == nil && r != path {
		li.Resolved = r
	}
	f, err := os.Open(path)
	if err != nil {
		li.Error = err.Error()
		return li
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		li.Size = st.Size()
		li.ModTime = st.ModTime().UTC()
	}
	sum, _, err := hashReader(f)
	if err != nil {
		li.Error = "reading: " + err.Error()
	} else {
		li.SHA256 = sum
	}
	pkg := dpkgOwner(ctx, path)
	if pkg == "" && li.Resolved != "" {
		pkg = dpkgOwner(ctx, li.Resolved)
	}
	li.Package = pkg
	return li
}

// dpkgOwner returns "package version" of the package that owns path, or ""
// when dpkg is missing or does not know the file.
func dpkgOwner(ctx context.Context, path string) string {
	if _, err := exec.LookPath("dpkg"); err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg", "-S", path).Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "diversion ") {
			continue
		}
		pkgs, _, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		pkg := strings.TrimSpace(strings.Split(pkgs, ",")[0])
		v, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
		if err == nil && len(bytes.TrimSpace(v)) > 0 {
			return pkg + " " + string(bytes.TrimSpace(v))
		}
		return pkg
	}
	return ""
}

// text renders system.txt.
func (si systemInfo) text(in Input, created time.Time) []byte {
	var b strings.Builder
	w := func(k, v string) { fmt.Fprintf(&b, "%-14s %s\n", k+":", v) }
	b.WriteString("hsm-agent diagnostics: system\n\n")
	w("created_at", created.Format(time.RFC3339Nano))
	w("agent_version", in.AgentVersion)
	w("host", si.host)
	w("os", si.os)
	for _, k := range []struct{ label, key string }{{"os_id", "ID"}, {"os_version", "VERSION_ID"}, {"os_codename", "VERSION_CODENAME"}} {
		if v := si.osRelease[k.key]; v != "" {
			w(k.label, v)
		}
	}
	w("kernel", si.kernel)
	w("go", runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	b.WriteString("\nPKCS#11 library\n")
	if si.lib == nil {
		w("path", "(none given)")
	} else {
		l := si.lib
		w("path", l.Path)
		if l.Resolved != "" {
			w("resolved", l.Resolved)
		}
		if l.Error != "" {
			w("error", l.Error)
		} else {
			w("size", strconv.FormatInt(l.Size, 10))
			w("mtime", l.ModTime.Format(time.RFC3339))
			w("sha256", l.SHA256)
		}
		if l.Package != "" {
			w("package", l.Package)
		} else {
			w("package", "unknown (no dpkg, or dpkg -S does not know the file)")
		}
	}
	if len(si.errs) > 0 {
		b.WriteString("\nerrors while collecting\n")
		for _, e := range si.errs {
			b.WriteString("  " + e + "\n")
		}
	}
	return []byte(b.String())
}
