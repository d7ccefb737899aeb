package service

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/hsm-agent/hsm-agent/systemd"
)

// The service user, its directories and the credentials compat drop-in:
// what install creates beside the unit.

// sysusersUser is the `u` line of a sysusers.d snippet.
type sysusersUser struct{ name, gecos, home, shell string }

// tmpfilesDir is a `d` line of a tmpfiles.d snippet.
type tmpfilesDir struct {
	path, user, group string
	mode              fs.FileMode
}

// createUser creates the hsm-agent user with systemd-sysusers, or with
// useradd where systemd-sysusers is not installed.
func (l *linuxService) createUser() error {
	if _, err := l.lookPath("systemd-sysusers"); err == nil {
		if err := l.run("systemd-sysusers", append(l.rootArgs("--root="), l.path(sysusersFile))...); err != nil {
			return fmt.Errorf("create the hsm-agent user: %w", err)
		}
		l.printf("user hsm-agent: systemd-sysusers %s", l.path(sysusersFile))
		return nil
	}
	u, err := parseSysusers(systemd.Sysusers)
	if err != nil {
		return err
	}
	if _, _, found, err := l.lookupIDs(u.name, u.name); err != nil {
		return err
	} else if found {
		l.printf("user %s: exists", u.name)
		return nil
	}
	args := []string{"--system", "--user-group", "--home-dir", u.home, "--no-create-home", "--shell", u.shell, "--comment", u.gecos}
	if !l.live() {
		args = append(args, "--prefix", l.root)
	}
	if err := l.run("useradd", append(args, u.name)...); err != nil {
		return fmt.Errorf("create the %s user (systemd-sysusers not installed): %w", u.name, err)
	}
	l.printf("user %s: created with useradd", u.name)
	return nil
}

// createDirs creates the tmpfiles snippet's directories, with
// systemd-tmpfiles or by hand where it is not installed.
func (l *linuxService) createDirs() error {
	if _, err := l.lookPath("systemd-tmpfiles"); err == nil {
		if err := l.run("systemd-tmpfiles", append(append([]string{"--create"}, l.rootArgs("--root=")...), l.path(tmpfilesFile))...); err != nil {
			return fmt.Errorf("create the directories: %w", err)
		}
		l.printf("directories: systemd-tmpfiles --create %s", l.path(tmpfilesFile))
		return nil
	}
	dirs, err := parseTmpfiles(systemd.Tmpfiles)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		uid, gid, found, err := l.lookupIDs(d.user, d.group)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("create %s: user %s or group %s does not exist", d.path, d.user, d.group)
		}
		p := l.path(d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		l.printf("directory %s: mode %04o, owner %s:%s", p, d.mode, d.user, d.group)
	}
	return nil
}

// credentialsCompat installs systemd.CredentialsCompat where systemd is
// older than systemd.CredentialDirMinVersion.
func (l *linuxService) credentialsCompat() error {
	v := l.opts.systemdVersion
	if l.live() {
		var out []byte
		bin, err := l.lookPath("systemctl")
		if err == nil {
			out, err = exec.Command(bin, "--version").Output()
		}
		if err == nil {
			v, err = parseSystemdVersion(string(out))
		}
		if err != nil {
			l.printf("note: cannot tell the systemd version (%v): assuming %d or later; if the service fails on LoadCredential=, copy the compat drop-in to %s", err, systemd.CredentialDirMinVersion, compatFile)
			return nil
		}
	}
	if v == 0 {
		l.printf("note: --root without --systemd-version: assuming systemd %d or later (credential directories)", systemd.CredentialDirMinVersion)
		return nil
	}
	if v >= systemd.CredentialDirMinVersion {
		return nil
	}
	if err := l.writeFile(compatFile, systemd.CredentialsCompat); err != nil {
		return err
	}
	l.printf("systemd %d < %d: secrets come from the config's *_file paths, not credentials (%s)", v, systemd.CredentialDirMinVersion, l.path(compatFile))
	return nil
}

// parseSystemdVersion reads the version from `systemctl --version`
// ("systemd 252 (252.38-1~deb12u1)").
func parseSystemdVersion(out string) (int, error) {
	first, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) < 2 || f[0] != "systemd" {
		return 0, fmt.Errorf("unexpected systemctl --version output %q", first)
	}
	v, err := strconv.Atoi(f[1])
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("unexpected systemctl --version output %q", first)
	}
	return v, nil
}

// lookupIDs resolves a user and a group on the target system; found is
// false when either does not exist.
func (l *linuxService) lookupIDs(userName, groupName string) (uid, gid int, found bool, err error) {
	if l.live() {
		u, uerr := user.Lookup(userName)
		g, gerr := user.LookupGroup(groupName)
		if uerr != nil || gerr != nil {
			var unknownUser user.UnknownUserError
			var unknownGroup user.UnknownGroupError
			if (uerr == nil || errors.As(uerr, &unknownUser)) && (gerr == nil || errors.As(gerr, &unknownGroup)) {
				return 0, 0, false, nil
			}
			return 0, 0, false, fmt.Errorf("look up %s:%s: %w", userName, groupName, errors.Join(uerr, gerr))
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(g.Gid)
		return uid, gid, true, nil
	}
	uid, uok, err := lookupColonFile(l.path("/etc/passwd"), userName)
	if err != nil {
		return 0, 0, false, err
	}
	gid, gok, err := lookupColonFile(l.path("/etc/group"), groupName)
	if err != nil {
		return 0, 0, false, err
	}
	return uid, gid, uok && gok, nil
}

// lookupColonFile finds name's numeric ID (third field) in a passwd or
// group file; a missing file holds no names.
func lookupColonFile(file, name string) (int, bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == name {
			id, err := strconv.Atoi(f[2])
			if err != nil {
				return 0, false, fmt.Errorf("%s: bad ID for %s: %q", file, name, f[2])
			}
			return id, true, nil
		}
	}
	return 0, false, nil
}

// parseSysusers reads the single `u` line of systemd.Sysusers, so that the
// useradd fallback creates the same user.
func parseSysusers(text string) (sysusersUser, error) {
	for _, line := range strings.Split(text, "\n") {
		f := splitConfigFields(line)
		if len(f) >= 6 && f[0] == "u" {
			return sysusersUser{name: f[1], gecos: f[3], home: f[4], shell: f[5]}, nil
		}
	}
	return sysusersUser{}, errors.New("embedded sysusers snippet has no complete `u` line (Type Name ID GECOS Home Shell)")
}

// parseTmpfiles reads the `d` lines of systemd.Tmpfiles, so that the
// fallback creates the same directories.
func parseTmpfiles(text string) ([]tmpfilesDir, error) {
	var dirs []tmpfilesDir
	for _, line := range strings.Split(text, "\n") {
		f := splitConfigFields(line)
		if len(f) == 0 || f[0] != "d" {
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("embedded tmpfiles snippet: line %q lacks Mode User Group", line)
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("embedded tmpfiles snippet: line %q: mode: %w", line, err)
		}
		dirs = append(dirs, tmpfilesDir{path: f[1], mode: fs.FileMode(mode), user: f[3], group: f[4]})
	}
	if len(dirs) == 0 {
		return nil, errors.New("embedded tmpfiles snippet has no `d` line")
	}
	return dirs, nil
}
