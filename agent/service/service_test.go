//go:build linux

package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hsm-agent/hsm-agent/systemd"
)

// The test binary doubles as `hsm-agent service ...` when re-executed with
// HSM_AGENT_TEST_SERVICE=1 (TestServiceLiveInstall runs it that way inside a
// private mount namespace).
func init() {
	if os.Getenv("HSM_AGENT_TEST_SERVICE") == "1" && len(os.Args) > 1 && os.Args[1] == "service" {
		os.Exit(Main(os.Args[2:], os.Stdout, os.Stderr))
	}
}

const (
	testExe    = "/usr/local/bin/hsm-agent"
	testConfig = "/etc/hsm-agent/config.yml"
)

// newImageRoot returns a scratch image root holding an executable
// /usr/local/bin/hsm-agent.
func newImageRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeTestFile(t, filepath.Join(root, testExe), "#!/bin/sh\nexit 0\n", 0o755)
	return root
}

func writeTestFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func runService(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func readTestFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test must run as root: %s", why)
	}
}

// dirStates describes the tmpfiles snippet's directories under root as
// "path mode user:group", resolving IDs through root's own passwd and group.
func dirStates(t *testing.T, root string) []string {
	t.Helper()
	dirs, err := parseTmpfiles(systemd.Tmpfiles)
	if err != nil {
		t.Fatal(err)
	}
	names := func(file string) map[int]string {
		m := map[int]string{}
		for _, line := range strings.Split(readTestFile(t, filepath.Join(root, file)), "\n") {
			if f := strings.Split(line, ":"); len(f) >= 3 {
				id, _ := strconv.Atoi(f[2])
				m[id] = f[0]
			}
		}
		return m
	}
	users, groups := names("etc/passwd"), names("etc/group")
	var states []string
	for _, d := range dirs {
		st, err := os.Stat(filepath.Join(root, d.path))
		if err != nil {
			t.Errorf("directory %s: %v", d.path, err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		states = append(states, fmt.Sprintf("%s %04o %s:%s", d.path, st.Mode().Perm(), users[int(sys.Uid)], groups[int(sys.Gid)]))
	}
	return states
}

// passwdEntry returns root's /etc/passwd line for name, or "".
func passwdEntry(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+":") {
			return line
		}
	}
	return ""
}

func wantDirStates() []string {
	return []string{
		"/var/lib/hsm-agent 0700 hsm-agent:hsm-agent",
		"/etc/hsm-agent/credentials 0700 hsm-agent:hsm-agent",
		"/etc/hsm-agent/credentials/pins 0700 hsm-agent:hsm-agent",
		"/etc/hsm-agent/credentials/desks 0700 hsm-agent:hsm-agent",
	}
}

func TestServiceInstallIntoRoot(t *testing.T) {
	requireRoot(t, "systemd-tmpfiles gives the directories to the hsm-agent user")
	t.Parallel()
	root := newImageRoot(t)
	code, out, errOut := runService(t, "install", "--root", root, "--exe", testExe, "--config", testConfig)
	if code != 0 {
		t.Fatalf("install: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	want, err := systemd.Render(testExe, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/hsm-agent.service")
	if got := readTestFile(t, unitPath); got != want {
		t.Errorf("installed unit differs from systemd.Render(%q, %q):\n%s", testExe, testConfig, got)
	}
	if !strings.Contains(want, "ExecStart="+testExe+" run --config "+testConfig+"\n") {
		t.Errorf("rendered unit does not run %s", testExe)
	}
	for p, content := range map[string]string{
		"etc/systemd/system/hsm-agent.service": want,
		"etc/sysusers.d/hsm-agent.conf":        systemd.Sysusers,
		"etc/tmpfiles.d/hsm-agent.conf":        systemd.Tmpfiles,
	} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %04o, want 0644", p, st.Mode().Perm())
		}
		if got := readTestFile(t, filepath.Join(root, p)); got != content {
			t.Errorf("%s differs from the embedded file", p)
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/hsm-agent.service")
	if dst, err := os.Readlink(wants); err != nil || dst != "/etc/systemd/system/hsm-agent.service" {
		t.Errorf("not enabled: readlink %s = %q, %v", wants, dst, err)
	}
	if _, err := os.Stat(filepath.Join(root, compatFile)); err == nil {
		t.Error("compat drop-in installed although no old systemd version was given")
	}
	// systemd-sysusers and systemd-tmpfiles ran against the image, not the host.
	if e := passwdEntry(t, root, "hsm-agent"); !strings.HasSuffix(e, ":HSM health agent:/var/lib/hsm-agent:/usr/sbin/nologin") {
		t.Errorf("image /etc/passwd entry for hsm-agent = %q", e)
	}
	if got := dirStates(t, root); strings.Join(got, "\n") != strings.Join(wantDirStates(), "\n") {
		t.Errorf("directories:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantDirStates(), "\n"))
	}
	if !strings.Contains(out, "does not exist yet") || !strings.Contains(out, "hsm-agent config check "+testConfig) {
		t.Errorf("install should say the configuration is missing; stdout:\n%s", out)
	}

	// A second install refuses to overwrite.
	code, _, errOut = runService(t, "install", "--root", root, "--exe", testExe)
	if code != 1 || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "hsm-agent service uninstall") {
		t.Errorf("second install: exit %d, stderr %q; want 1 and a hint to uninstall first", code, errOut)
	}

	// Uninstall removes what install wrote and keeps user, config and state.
	code, out, errOut = runService(t, "uninstall", "--root", root)
	if code != 0 {
		t.Fatalf("uninstall: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, p := range []string{"etc/systemd/system/hsm-agent.service", "etc/sysusers.d/hsm-agent.conf", "etc/tmpfiles.d/hsm-agent.conf", "etc/systemd/system/multi-user.target.wants/hsm-agent.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("uninstall left %s (%v)", p, err)
		}
	}
	if passwdEntry(t, root, "hsm-agent") == "" {
		t.Error("uninstall removed the hsm-agent user; it must keep it (files it owns remain)")
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/hsm-agent")); err != nil {
		t.Errorf("uninstall removed the state directory: %v", err)
	}
	code, _, errOut = runService(t, "uninstall", "--root", root)
	if code != 1 || !strings.Contains(errOut, "nothing to remove") {
		t.Errorf("uninstall of nothing: exit %d, stderr %q", code, errOut)
	}
}

func TestServiceCredentialsCompatDropIn(t *testing.T) {
	requireRoot(t, "systemd-tmpfiles gives the directories to the hsm-agent user")
	t.Parallel()
	for _, tc := range []struct {
		version    int
		wantCompat bool
	}{{247, true}, {systemd.CredentialDirMinVersion - 1, true}, {systemd.CredentialDirMinVersion, false}, {255, false}} {
		root := newImageRoot(t)
		code, out, errOut := runService(t, "install", "--root", root, "--exe", testExe, "--systemd-version", strconv.Itoa(tc.version))
		if code != 0 {
			t.Fatalf("systemd %d: install: exit %d\n%s\n%s", tc.version, code, out, errOut)
		}
		got, err := os.ReadFile(filepath.Join(root, compatFile))
		switch {
		case tc.wantCompat && err != nil:
			t.Errorf("systemd %d: no compat drop-in: %v", tc.version, err)
		case tc.wantCompat && string(got) != systemd.CredentialsCompat:
			t.Errorf("systemd %d: compat drop-in differs from systemd.CredentialsCompat", tc.version)
		case !tc.wantCompat && err == nil:
			t.Errorf("systemd %d: compat drop-in installed, want none", tc.version)
		}
		if code, out, errOut := runService(t, "uninstall", "--root", root); code != 0 {
			t.Fatalf("systemd %d: uninstall: exit %d\n%s\n%s", tc.version, code, out, errOut)
		}
		if _, err := os.Stat(filepath.Join(root, dropInDir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("systemd %d: uninstall left %s (%v)", tc.version, dropInDir, err)
		}
	}
}

// Without systemd-sysusers and systemd-tmpfiles, install creates the same
// user (useradd) and the same directories (by hand) as they would.
func TestServiceInstallWithoutSystemdTools(t *testing.T) {
	requireRoot(t, "useradd and chown")
	t.Parallel()
	root := newImageRoot(t)
	writeTestFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n", 0o644)
	writeTestFile(t, filepath.Join(root, "etc/group"), "root:x:0:\n", 0o644)
	var out bytes.Buffer
	l := newLinuxService(serviceOptions{action: "install", root: root, exe: testExe, config: testConfig}, &out)
	var asked []string
	l.lookPath = func(name string) (string, error) {
		asked = append(asked, name)
		if name == "systemd-sysusers" || name == "systemd-tmpfiles" {
			return "", exec.ErrNotFound
		}
		return exec.LookPath(name)
	}
	if err := l.install(); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	if !strings.Contains(strings.Join(asked, " "), "useradd") {
		t.Errorf("useradd was not used; looked up %v", asked)
	}
	if e := passwdEntry(t, root, "hsm-agent"); !strings.HasSuffix(e, ":HSM health agent:/var/lib/hsm-agent:/usr/sbin/nologin") {
		t.Errorf("useradd fallback: /etc/passwd entry %q", e)
	}
	if got := dirStates(t, root); strings.Join(got, "\n") != strings.Join(wantDirStates(), "\n") {
		t.Errorf("directories:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantDirStates(), "\n"))
	}
}

func TestServiceInstallRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(root string)
		args  []string
		want  []string
	}{
		{"binary under /home", nil, []string{"--exe", "/home/ops/hsm-agent"}, []string{"/home/ops/hsm-agent", "ProtectHome=yes", "--exe"}},
		{"config under /tmp", nil, []string{"--exe", testExe, "--config", "/tmp/config.yml"}, []string{"/tmp/config.yml", "PrivateTmp=yes", "--config"}},
		{"relative binary", nil, []string{"--exe", "bin/hsm-agent"}, []string{"must be absolute"}},
		{"space in config", nil, []string{"--exe", testExe, "--config", "/etc/hsm agent.yml"}, []string{"systemd would interpret"}},
		{"no --exe with --root", nil, nil, []string{"--root needs --exe"}},
		{"package installed", func(root string) {
			writeTestFile(t, filepath.Join(root, "usr/lib/systemd/system/hsm-agent.service"), systemd.Unit, 0o644)
		}, []string{"--exe", testExe}, []string{"package is installed", "systemctl enable --now hsm-agent"}},
	} {
		root := newImageRoot(t)
		if tc.setup != nil {
			tc.setup(root)
		}
		code, out, errOut := runService(t, append([]string{"install", "--root", root}, tc.args...)...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; stdout %q", tc.name, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errOut, w)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "etc")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused install wrote under %s/etc", tc.name, root)
		}
	}
}

func TestServiceUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: hsm-agent service install|uninstall"},
		{[]string{"restart"}, 2, `unknown action "restart"`},
		{[]string{"status", "--root", "/mnt"}, 2, "--root applies to install and uninstall only"},
		{[]string{"install", "--systemd-version", "249"}, 2, "--systemd-version needs --root"},
		{[]string{"install", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"install", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"--help"}, 0, "usage: hsm-agent service"},
	} {
		code, _, errOut := runService(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("service %q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// Without a running systemd, start, stop and status say so instead of
// calling systemctl; without systemd at all, install refuses too. Nothing
// on the host is touched: both checks happen before any file is written.
func TestServiceWithoutSystemd(t *testing.T) {
	t.Parallel()
	notRunning := func() bool { return false }
	for _, action := range []string{"start", "stop", "status"} {
		var out bytes.Buffer
		l := newLinuxService(serviceOptions{action: action, config: testConfig}, &out)
		l.systemdRunning = notRunning
		l.lookPath = func(string) (string, error) { return "/usr/bin/systemctl", nil }
		_, err := l.liveService()
		if err == nil || !strings.Contains(err.Error(), "systemd is not running on this host") || !strings.Contains(err.Error(), "hsm-agent run --config FILE") {
			t.Errorf("%s with systemctl but no running systemd: %v", action, err)
		}
	}
	for _, action := range []string{"install", "uninstall", "start"} {
		var out bytes.Buffer
		l := newLinuxService(serviceOptions{action: action, exe: testExe, config: testConfig}, &out)
		l.systemdRunning = notRunning
		l.lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
		var err error
		switch action {
		case "install":
			err = l.install()
		case "uninstall":
			err = l.uninstall()
		default:
			_, err = l.liveService()
		}
		if err == nil || !strings.Contains(err.Error(), "has no systemd") || !strings.Contains(err.Error(), "--root DIR") {
			t.Errorf("%s without systemd: %v", action, err)
		}
		if out.Len() != 0 {
			t.Errorf("%s without systemd printed progress: %q", action, out.String())
		}
	}
}

func TestParseSystemdVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("systemctl", "--version").Output()
	if err != nil {
		t.Fatalf("systemctl --version (install systemd): %v", err)
	}
	v, err := parseSystemdVersion(string(out))
	if err != nil || v < 200 {
		t.Errorf("parseSystemdVersion(this host's systemctl --version) = %d, %v", v, err)
	}
	for in, want := range map[string]int{
		"systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT": 252,
		"systemd 249 (249.11-0ubuntu3.12)":            249,
		"systemd 256 (256.7-1.fc41)\n":                256,
	} {
		if v, err := parseSystemdVersion(in); v != want || err != nil {
			t.Errorf("parseSystemdVersion(%q) = %d, %v; want %d", in, v, err, want)
		}
	}
	for _, bad := range []string{"", "System has not been booted", "systemd abc", "systemd -1"} {
		if _, err := parseSystemdVersion(bad); err == nil {
			t.Errorf("parseSystemdVersion(%q) gave no error", bad)
		}
	}
}

func TestEmbeddedSnippetsParse(t *testing.T) {
	t.Parallel()
	u, err := parseSysusers(systemd.Sysusers)
	if err != nil {
		t.Fatal(err)
	}
	if u != (sysusersUser{name: "hsm-agent", gecos: "HSM health agent", home: "/var/lib/hsm-agent", shell: "/usr/sbin/nologin"}) {
		t.Errorf("parseSysusers = %+v", u)
	}
	if got := wantedBy(systemd.Unit); len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("wantedBy(unit) = %q", got)
	}
	if _, err := parseTmpfiles("# nothing\n"); err == nil {
		t.Error("parseTmpfiles accepted a snippet without directories")
	}
}

func TestRunServiceOutsideAServiceManager(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "x")
	sentinel := errors.New("daemon stopped")
	err := Run(ctx, func(got context.Context) error {
		if got.Value(key{}) != "x" {
			t.Error("Run did not pass the caller's context")
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("Run = %v, want the daemon's error", err)
	}
}

// nsScript runs inside a private mount namespace: /etc and /var/lib are
// overlays whose writes vanish with the namespace, /run is empty (no
// systemd can be reached, even where one runs), and /usr/local/bin holds
// this test binary as hsm-agent. It runs the live (no --root) install,
// status/start/stop, verify and uninstall, and copies the results to $OUT.
const nsScript = `set -eu
T=$1 BIN=$2 OUT=$1/out
mkdir -p "$OUT" "$T/ovl"
mount -t tmpfs tmpfs "$T/ovl"
mkdir -p "$T/ovl/etc/u" "$T/ovl/etc/w" "$T/ovl/var/u" "$T/ovl/var/w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/ovl/etc/u,workdir=$T/ovl/etc/w" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$T/ovl/var/u,workdir=$T/ovl/var/w" /var/lib
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /usr/local/bin
cp "$BIN" /usr/local/bin/hsm-agent
# A host where hsm-agent was never installed.
for f in /etc/passwd /etc/group /etc/shadow /etc/gshadow; do
	[ ! -f "$f" ] || sed -i '/^hsm-agent:/d' "$f"
done
rm -rf /var/lib/hsm-agent /etc/hsm-agent /etc/systemd/system/hsm-agent.service /etc/systemd/system/hsm-agent.service.d \
	/etc/systemd/system/multi-user.target.wants/hsm-agent.service /etc/sysusers.d/hsm-agent.conf /etc/tmpfiles.d/hsm-agent.conf
getent passwd hsm-agent >"$OUT/passwd-before" || true
svc() { HSM_AGENT_TEST_SERVICE=1 /usr/local/bin/hsm-agent service "$@"; }
step() { name=$1; shift; rc=0; "$@" >"$OUT/$name.out" 2>&1 || rc=$?; echo "$rc" >"$OUT/$name.rc"; }
step install svc install
cp /etc/systemd/system/hsm-agent.service "$OUT/unit" || true
readlink /etc/systemd/system/multi-user.target.wants/hsm-agent.service >"$OUT/wants" || true
getent passwd hsm-agent >"$OUT/passwd" || true
stat -c '%n %a %U:%G' /var/lib/hsm-agent /etc/hsm-agent/credentials /etc/hsm-agent/credentials/pins /etc/hsm-agent/credentials/desks >"$OUT/dirs" 2>&1 || true
step verify systemd-analyze verify --man=no hsm-agent.service
step install2 svc install
step status svc status
step start svc start
step stop svc stop
step uninstall svc uninstall
ls -d /etc/systemd/system/hsm-agent.service /etc/systemd/system/multi-user.target.wants/hsm-agent.service \
	/etc/sysusers.d/hsm-agent.conf /etc/tmpfiles.d/hsm-agent.conf >"$OUT/left" 2>/dev/null || true
getent passwd hsm-agent >"$OUT/passwd-after" || true
`

// TestServiceLiveInstall runs the real, live install path (kardianos/service
// writing our unit, systemctl enabling it, systemd-sysusers and
// systemd-tmpfiles on the host's /etc and /var/lib) in a private mount
// namespace, so the host stays untouched.
func TestServiceLiveInstall(t *testing.T) {
	requireRoot(t, "it mounts overlays over /etc and /var/lib in a private mount namespace")
	t.Parallel()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", nsScript, "sh", dir, os.Args[0])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("namespace script: %v\n%s", err, out)
	}
	outDir := filepath.Join(dir, "out")
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(outDir, name))
		return string(b)
	}
	step := func(name string) (int, string) {
		rc, err := strconv.Atoi(strings.TrimSpace(read(name + ".rc")))
		if err != nil {
			t.Fatalf("step %s did not run: %v", name, err)
		}
		return rc, read(name + ".out")
	}

	if before := read("passwd-before"); before != "" {
		t.Fatalf("could not remove the host's hsm-agent user inside the namespace: %q", before)
	}
	if rc, out := step("install"); rc != 0 {
		t.Fatalf("install: exit %d\n%s", rc, out)
	} else if !strings.Contains(out, "systemd is not running here: enabled") {
		t.Errorf("install should note that daemon-reload was skipped:\n%s", out)
	}
	want, err := systemd.Render(testExe, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	if got := read("unit"); got != want {
		t.Errorf("unit written through kardianos/service differs from systemd.Render:\n%s", got)
	}
	if got := strings.TrimSpace(read("wants")); got != "/etc/systemd/system/hsm-agent.service" {
		t.Errorf("systemctl enable: multi-user.target.wants/hsm-agent.service -> %q", got)
	}
	if got := read("passwd"); !strings.Contains(got, ":HSM health agent:/var/lib/hsm-agent:/usr/sbin/nologin") {
		t.Errorf("hsm-agent user: %q", got)
	}
	wantDirs := "/var/lib/hsm-agent 700 hsm-agent:hsm-agent\n/etc/hsm-agent/credentials 700 hsm-agent:hsm-agent\n" +
		"/etc/hsm-agent/credentials/pins 700 hsm-agent:hsm-agent\n/etc/hsm-agent/credentials/desks 700 hsm-agent:hsm-agent\n"
	if got := read("dirs"); got != wantDirs {
		t.Errorf("directories:\n%s\nwant:\n%s", got, wantDirs)
	}
	if rc, out := step("verify"); rc != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify of the installed unit: exit %d\n%s", rc, out)
	}
	if rc, out := step("install2"); rc != 1 || !strings.Contains(out, "already exists") {
		t.Errorf("second install: exit %d\n%s", rc, out)
	}
	for _, action := range []string{"status", "start", "stop"} {
		rc, out := step(action)
		if rc != 1 || !strings.Contains(out, "systemd is not running on this host") || !strings.Contains(out, "installed as /etc/systemd/system/hsm-agent.service") {
			t.Errorf("%s without a running systemd: exit %d\n%s", action, rc, out)
		}
	}
	if rc, out := step("uninstall"); rc != 0 {
		t.Errorf("uninstall: exit %d\n%s", rc, out)
	}
	if left := read("left"); left != "" {
		t.Errorf("uninstall left:\n%s", left)
	}
	if read("passwd-after") == "" {
		t.Error("uninstall removed the hsm-agent user")
	}
}
