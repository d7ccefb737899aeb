package systemd

import (
	"os"
	"strings"
	"testing"
)

// TestEmbeddedMatchesFiles guards against the embedded copies and the files
// the packages ship drifting apart (for example after a generated rewrite).
func TestEmbeddedMatchesFiles(t *testing.T) {
	t.Parallel()
	for path, got := range map[string]string{
		"hsm-agent.service":                 Unit,
		"sysusers.d/hsm-agent.conf":         Sysusers,
		"tmpfiles.d/hsm-agent.conf":         Tmpfiles,
		"compat/50-credentials-compat.conf": CredentialsCompat,
	} {
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) || got == "" {
			t.Errorf("embedded %s differs from the file on disk (or is empty)", path)
		}
	}
}

// TestUnitContract checks the settings other parts of hsm-agent rely on: the
// daemon's sd_notify/watchdog code, its credential lookup and the packages.
func TestUnitContract(t *testing.T) {
	t.Parallel()
	settings := map[string][]string{}
	for _, line := range strings.Split(Unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("hsm-agent.service: line %q is not KEY=VALUE", line)
		}
		settings[k] = append(settings[k], v)
	}
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "60",
		"User":                    "hsm-agent",
		"Group":                   "hsm-agent",
		"StateDirectory":          "hsm-agent",
		"ConfigurationDirectory":  "hsm-agent",
		"ExecStart":               DefaultExecStart,
		"ExecReload":              "/bin/sh -c 'kill -HUP $MAINPID'",
		"Restart":                 "on-failure",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
	}
	for k, v := range want {
		if got := settings[k]; len(got) != 1 || got[0] != v {
			t.Errorf("hsm-agent.service: %s=%q, want exactly one %s=%s", k, got, k, v)
		}
	}
	if _, ok := settings["DynamicUser"]; ok {
		t.Error("hsm-agent.service: DynamicUser= set; the vendor-group drop-in needs a static user")
	}
	creds := strings.Join(settings["LoadCredential"], " ")
	for _, c := range []string{"pin:/etc/hsm-agent/credentials/pins", "desk:/etc/hsm-agent/credentials/desks"} {
		if !strings.Contains(creds, c) {
			t.Errorf("hsm-agent.service: no LoadCredential=%s (have %q)", c, creds)
		}
	}
	for _, dir := range []string{"/etc/hsm-agent/credentials/pins", "/etc/hsm-agent/credentials/desks"} {
		if !strings.Contains(Tmpfiles, " "+dir+" ") {
			t.Errorf("tmpfiles.d/hsm-agent.conf does not create %s, which LoadCredential= requires", dir)
		}
	}
	if !strings.Contains(Sysusers, "u     hsm-agent ") {
		t.Error("sysusers.d/hsm-agent.conf does not create user hsm-agent")
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	got, err := Render("/opt/hsm-agent/bin/hsm-agent", "/opt/hsm-agent/etc/config.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "\nExecStart=/opt/hsm-agent/bin/hsm-agent run --config /opt/hsm-agent/etc/config.yml\n") {
		t.Errorf("Render did not rewrite ExecStart:\n%s", got)
	}
	if strings.Contains(got, DefaultExecStart) {
		t.Error("Render left the default ExecStart in place")
	}
	if !strings.HasPrefix(Unit, "# hsm-agent") || strings.Count(got, "\n") != strings.Count(Unit, "\n") {
		t.Error("Render changed more than the ExecStart line")
	}
	for _, bad := range [][2]string{
		{"hsm-agent", "/etc/hsm-agent/config.yml"},
		{"/usr/bin/hsm-agent", "config.yml"},
		{"/opt/my agent/hsm-agent", "/etc/hsm-agent/config.yml"},
		{"/usr/bin/hsm-agent", "/etc/%i/config.yml"},
	} {
		if _, err := Render(bad[0], bad[1]); err == nil {
			t.Errorf("Render(%q, %q) = nil error, want one", bad[0], bad[1])
		}
	}
}

func TestCredentialsCompatResetsLoadCredential(t *testing.T) {
	t.Parallel()
	var lines []string
	for _, l := range strings.Split(CredentialsCompat, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if strings.Join(lines, "|") != "[Service]|LoadCredential=" {
		t.Errorf("compat drop-in must only reset LoadCredential=, has %q", lines)
	}
}
