package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kardianos/service"

	"github.com/hsm-agent/hsm-agent/systemd"
)

// Where `hsm-agent service install` puts its files on Linux, relative to the
// root. They live under /etc, the administrator's tree: /usr/lib belongs to
// the package (which ships the same files), and an /etc copy overrides a
// /usr/lib one of the same name.
const (
	unitFile     = "/etc/systemd/system/hsm-agent.service" // where kardianos/service writes a system unit
	dropInDir    = "/etc/systemd/system/hsm-agent.service.d"
	compatFile   = dropInDir + "/50-credentials-compat.conf"
	sysusersFile = "/etc/sysusers.d/hsm-agent.conf"
	tmpfilesFile = "/etc/tmpfiles.d/hsm-agent.conf"
)

// packageUnits are where the .deb and .rpm install the unit.
var packageUnits = []string{"/lib/systemd/system/hsm-agent.service", "/usr/lib/systemd/system/hsm-agent.service"}

// hiddenFromUnit are trees the hardened unit hides from the service
// (ProtectHome=yes, PrivateTmp=yes): neither the binary nor the
// configuration may live there.
var hiddenFromUnit = []string{"/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/"}

func defaultServiceConfig() string { return "/etc/hsm-agent/config.yml" }

func platformService(opts serviceOptions, stdout, stderr io.Writer) int {
	l := newLinuxService(opts, stdout)
	var err error
	switch opts.action {
	case "install":
		err = l.install()
	case "uninstall":
		err = l.uninstall()
	case "start", "stop", "status":
		var s service.Service
		if s, err = l.liveService(); err == nil {
			if opts.action == "status" {
				return printStatus(s, "hsm-agent.service", stdout, stderr)
			}
			err = l.control(s, opts.action)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent service %s: %v\n", opts.action, err)
		return 1
	}
	return 0
}

// linuxService installs and controls hsm-agent under systemd.
type linuxService struct {
	opts serviceOptions
	out  io.Writer
	// root is opts.root made absolute, or "/" for the live system.
	root string
	// lookPath finds a tool (exec.LookPath; tests hide tools with it).
	lookPath func(string) (string, error)
	// systemdRunning reports whether systemd is the running service
	// manager (/run/systemd/system exists).
	systemdRunning func() bool
}

func newLinuxService(opts serviceOptions, out io.Writer) *linuxService {
	root := "/"
	if opts.root != "" {
		if abs, err := filepath.Abs(opts.root); err == nil {
			root = abs
		} else {
			root = opts.root
		}
	}
	return &linuxService{
		opts:     opts,
		out:      out,
		root:     root,
		lookPath: exec.LookPath,
		systemdRunning: func() bool {
			_, err := os.Stat("/run/systemd/system")
			return err == nil
		},
	}
}

// live reports whether this installs on the running system (no --root).
func (l *linuxService) live() bool { return l.root == "/" }

// path maps an absolute path of the target system to this machine.
func (l *linuxService) path(p string) string {
	if l.live() {
		return p
	}
	return filepath.Join(l.root, p)
}

func (l *linuxService) printf(format string, a ...any) { fmt.Fprintf(l.out, format+"\n", a...) }

// hasSystemd decides whether the live host is a systemd host: systemctl is
// installed or systemd runs. kardianos/service itself would also require
// PID 1 to be systemd and otherwise pick SysV init, whose script is not our
// hardened unit.
func (l *linuxService) hasSystemd() bool {
	if l.systemdRunning() {
		return true
	}
	_, err := l.lookPath("systemctl")
	return err == nil
}

// liveService returns kardianos/service's systemd implementation for the
// live host, whatever kardianos itself detected, with unit as its template.
func (l *linuxService) liveService() (service.Service, error) {
	if !l.hasSystemd() {
		return nil, errors.New("this Linux host has no systemd (no systemctl, no /run/systemd/system); " +
			"hsm-agent service supports systemd only, because it installs the hardened unit: " +
			"run `hsm-agent run --config FILE` from your init system instead, or use --root DIR to prepare an image")
	}
	if l.opts.action != "install" && l.opts.action != "uninstall" && !l.systemdRunning() {
		installed := "not installed"
		if _, err := os.Stat(unitFile); err == nil {
			installed = "installed as " + unitFile
		}
		return nil, fmt.Errorf("systemd is not running on this host (no /run/systemd/system; PID 1 is %s), so hsm-agent.service (%s) cannot be %s; "+
			"boot with systemd, or run `hsm-agent run --config FILE` under the init system in use", pid1Name(), installed, pastTense(l.opts.action))
	}
	var sd service.System
	for _, s := range service.AvailableSystems() {
		if s.String() == "linux-systemd" {
			sd = s
		}
	}
	if sd == nil {
		return nil, errors.New("kardianos/service offers no linux-systemd system (library changed?)")
	}
	// Controlling or removing an installed unit needs no template.
	exe, config, unit := "/usr/bin/hsm-agent", defaultServiceConfig(), ""
	if l.opts.action == "install" {
		var err error
		if exe, config, unit, err = l.renderUnit(); err != nil {
			return nil, err
		}
	}
	cfg := kardianosConfig(exe, config)
	cfg.Option = service.KeyValue{"SystemdScript": unit}
	s, err := sd.New(controlOnly{}, cfg)
	if err != nil {
		return nil, fmt.Errorf("kardianos/service: %w", err)
	}
	return s, nil
}

func pastTense(action string) string {
	switch action {
	case "stop":
		return "stopped"
	case "status":
		return "queried"
	}
	return action + "ed"
}

func pid1Name() string {
	b, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return "unknown"
	}
	return strconv.Quote(strings.TrimSpace(string(b)))
}

func (l *linuxService) control(s service.Service, action string) error {
	var err error
	if action == "start" {
		err = s.Start()
	} else {
		err = s.Stop()
	}
	if err != nil {
		return fmt.Errorf("systemctl %s hsm-agent.service: %w; see `systemctl status hsm-agent` and `journalctl -u hsm-agent`", action, err)
	}
	l.printf("hsm-agent.service: %s", pastTense(action))
	return nil
}

// renderUnit resolves the binary and configuration paths and renders the
// unit for them.
func (l *linuxService) renderUnit() (exe, config, unit string, err error) {
	exe = l.opts.exe
	if exe == "" {
		if !l.live() {
			return "", "", "", errors.New("--root needs --exe: the path of the hsm-agent binary inside the image (e.g. --exe /usr/bin/hsm-agent)")
		}
		if exe, err = os.Executable(); err != nil {
			return "", "", "", fmt.Errorf("find this executable: %w; pass --exe", err)
		}
		if exe, err = filepath.EvalSymlinks(exe); err != nil {
			return "", "", "", fmt.Errorf("find this executable: %w; pass --exe", err)
		}
	}
	config = l.opts.config
	if l.live() {
		if exe, err = filepath.Abs(exe); err != nil {
			return "", "", "", err
		}
		if config, err = filepath.Abs(config); err != nil {
			return "", "", "", err
		}
	}
	for _, p := range []struct{ what, flag, path string }{{"binary", "--exe", exe}, {"configuration", "--config", config}} {
		for _, h := range hiddenFromUnit {
			if strings.HasPrefix(p.path, h) {
				return "", "", "", fmt.Errorf("%s %s is under %s, which the hardened unit hides from the service (ProtectHome=yes, PrivateTmp=yes hide /home, /root, /run/user, /tmp and /var/tmp): "+
					"move it (binary: /usr/local/bin/hsm-agent; configuration: /etc/hsm-agent/config.yml) and pass %s", p.what, p.path, strings.TrimSuffix(h, "/"), p.flag)
			}
		}
	}
	unit, err = systemd.Render(exe, config)
	if err != nil {
		return "", "", "", err
	}
	// kardianos/service expands SystemdScript with its own template engine,
	// which copies text verbatim but treats every "{{" as an action; the
	// unit must not contain one, or the written file would differ.
	if strings.Contains(unit, "{{") {
		return "", "", "", errors.New("the embedded unit contains \"{{\", which kardianos/service would expand: remove it from systemd/hsm-agent.service")
	}
	return exe, config, unit, nil
}

func (l *linuxService) install() error {
	if l.live() && !l.hasSystemd() {
		_, err := l.liveService()
		return err
	}
	exe, config, unit, err := l.renderUnit()
	if err != nil {
		return err
	}
	for _, p := range packageUnits {
		if _, err := os.Stat(l.path(p)); err == nil {
			return fmt.Errorf("the hsm-agent package is installed (%s): it already provides the service; "+
				"use systemctl enable --now hsm-agent, or remove the package before installing by hand", l.path(p))
		}
	}
	if _, err := os.Lstat(l.path(unitFile)); err == nil {
		return fmt.Errorf("%s already exists: run `hsm-agent service uninstall` first (it keeps the configuration, the state and the hsm-agent user)", l.path(unitFile))
	}
	if st, err := os.Stat(l.path(exe)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		if l.live() {
			return fmt.Errorf("binary %s is not an executable file: pass --exe with the installed hsm-agent", exe)
		}
		l.printf("note: %s is not an executable file yet: copy the hsm-agent binary there", l.path(exe))
	}

	// 1. The hsm-agent system user.
	if err := l.writeFile(sysusersFile, systemd.Sysusers); err != nil {
		return err
	}
	if err := l.createUser(); err != nil {
		return err
	}
	// 2. The state and credential directories.
	if err := l.writeFile(tmpfilesFile, systemd.Tmpfiles); err != nil {
		return err
	}
	if err := l.createDirs(); err != nil {
		return err
	}
	// 3. systemd < 251 cannot load credential directories.
	if err := l.credentialsCompat(); err != nil {
		return err
	}
	// 4. The unit, enabled.
	if l.live() {
		if err := l.installLiveUnit(unit); err != nil {
			return err
		}
	} else {
		if err := l.writeFile(unitFile, unit); err != nil {
			return err
		}
		if err := l.enableInRoot(unit); err != nil {
			return err
		}
	}
	if _, err := os.Stat(l.path(config)); err != nil {
		l.printf("note: %s does not exist yet: write it (readable by the hsm-agent user) and check it with `hsm-agent config check %s`", l.path(config), config)
	}
	l.printf("installed hsm-agent.service (enabled, not started): it runs %s run --config %s", exe, config)
	if l.live() {
		l.printf("next: edit %s, then `hsm-agent service start`; logs: journalctl -u hsm-agent", config)
	}
	return nil
}

// installLiveUnit lets kardianos/service write, enable and daemon-reload
// the unit, then checks that the file is exactly unit.
func (l *linuxService) installLiveUnit(unit string) error {
	s, err := l.liveService()
	if err != nil {
		return err
	}
	installErr := s.Install()
	got, readErr := os.ReadFile(unitFile)
	if readErr != nil {
		if installErr != nil {
			return fmt.Errorf("install %s: %w", unitFile, installErr)
		}
		return fmt.Errorf("kardianos/service wrote no %s: %w", unitFile, readErr)
	}
	if string(got) != unit {
		// Never leave a unit that is not the hardened one enabled.
		_ = s.Uninstall()
		_ = os.Remove(unitFile)
		return fmt.Errorf("kardianos/service wrote a %s that differs from the hardened unit (did its template expansion change?); removed it again", unitFile)
	}
	l.printf("wrote %s", unitFile)
	if installErr != nil {
		// kardianos runs `systemctl enable` then `systemctl daemon-reload`;
		// without a running systemd (a container, a chroot) the second
		// fails, yet the enabled unit starts at the next boot.
		enabled, _ := filepath.Glob("/etc/systemd/system/*.wants/hsm-agent.service")
		if l.systemdRunning() || len(enabled) == 0 {
			return fmt.Errorf("systemctl enable hsm-agent.service && systemctl daemon-reload: %w; run them by hand to see why", installErr)
		}
		l.printf("systemd is not running here: enabled %s for the next boot (daemon-reload skipped)", strings.Join(enabled, ", "))
	}
	return nil
}

// writeFile writes content to the target path p (mode 0644), creating the
// directories it needs.
func (l *linuxService) writeFile(p, content string) error {
	dst := l.path(p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	if err := os.WriteFile(dst, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Chmod(dst, 0o644); err != nil { // WriteFile keeps an old file's mode
		return fmt.Errorf("write %s: %w", dst, err)
	}
	l.printf("wrote %s", dst)
	return nil
}

// run runs a tool and returns an error carrying its output.
func (l *linuxService) run(name string, args ...string) error {
	bin, err := l.lookPath(name)
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *linuxService) rootArgs(flag string) []string {
	if l.live() {
		return nil
	}
	return []string{flag + l.root}
}

// enableInRoot does what `systemctl enable` does for the unit's [Install]
// section: a symlink in each WantedBy= target's .wants directory.
func (l *linuxService) enableInRoot(unit string) error {
	for _, target := range wantedBy(unit) {
		link := path.Join("/etc/systemd/system", target+".wants", "hsm-agent.service")
		p := l.path(link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("enable: %w", err)
		}
		_ = os.Remove(p)
		if err := os.Symlink(unitFile, p); err != nil {
			return fmt.Errorf("enable: %w", err)
		}
		l.printf("enabled: %s -> %s", p, unitFile)
	}
	return nil
}

// wantedBy returns the WantedBy= targets of a unit's [Install] section.
func wantedBy(unit string) []string {
	var targets []string
	section := ""
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if v, ok := strings.CutPrefix(line, "WantedBy="); ok && section == "[Install]" {
			targets = append(targets, strings.Fields(v)...)
		}
	}
	return targets
}

func (l *linuxService) uninstall() error {
	removed := 0
	if l.live() {
		if !l.hasSystemd() {
			_, err := l.liveService()
			return err
		}
		if _, err := os.Stat(unitFile); err == nil {
			s, err := l.liveService()
			if err != nil {
				return err
			}
			// kardianos: systemctl disable, remove the file, daemon-reload
			// (which fails where systemd is not running).
			err = s.Uninstall()
			if _, statErr := os.Stat(unitFile); err != nil && (statErr == nil || l.systemdRunning()) {
				return fmt.Errorf("systemctl disable hsm-agent.service, remove %s, systemctl daemon-reload: %w; run them by hand to see why", unitFile, err)
			}
			l.printf("removed %s (disabled)", unitFile)
			removed++
		}
	} else {
		links, _ := filepath.Glob(l.path("/etc/systemd/system/*.wants/hsm-agent.service"))
		for _, link := range links {
			if dst, err := os.Readlink(link); err == nil && dst == unitFile {
				if err := os.Remove(link); err != nil {
					return fmt.Errorf("disable: %w", err)
				}
				l.printf("removed %s", link)
			}
		}
		n, err := l.remove(unitFile, "")
		if err != nil {
			return err
		}
		removed += n
	}
	for _, f := range []struct{ path, content string }{{sysusersFile, ""}, {tmpfilesFile, ""}, {compatFile, systemd.CredentialsCompat}} {
		n, err := l.remove(f.path, f.content)
		if err != nil {
			return err
		}
		removed += n
	}
	_ = os.Remove(l.path(dropInDir)) // only when empty: local drop-ins stay
	if removed == 0 {
		return fmt.Errorf("nothing to remove: %s does not exist (was hsm-agent installed by the package? then remove the package)", l.path(unitFile))
	}
	l.printf("kept: the hsm-agent user, /etc/hsm-agent (configuration and credentials) and /var/lib/hsm-agent (state); remove them by hand if no longer needed")
	return nil
}

// remove deletes the target file p if it exists (and, when onlyIf is set,
// holds exactly onlyIf: a compat drop-in the package installed is left to
// the package only if it differs). It returns how many files it removed.
func (l *linuxService) remove(p, onlyIf string) (int, error) {
	dst := l.path(p)
	if onlyIf != "" {
		b, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(b, []byte(onlyIf)) {
			return 0, nil
		}
	}
	if err := os.Remove(dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("remove %s: %w", dst, err)
	}
	l.printf("removed %s", dst)
	return 1, nil
}

// splitConfigFields splits a sysusers/tmpfiles line into fields separated by
// white space, where a double-quoted field may hold spaces; comments and
// blank lines give no fields.
func splitConfigFields(line string) []string {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	var fields []string
	for line != "" {
		if line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				fields = append(fields, line[1:])
				break
			}
			fields = append(fields, line[1:end+1])
			line = strings.TrimSpace(line[end+2:])
			continue
		}
		end := strings.IndexAny(line, " \t")
		if end < 0 {
			fields = append(fields, line)
			break
		}
		fields = append(fields, line[:end])
		line = strings.TrimSpace(line[end:])
	}
	return fields
}
