package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reloadOutcome sends one reload and waits for its log line: true for
// "configuration reloaded", false for "reload failed".
func (ra *runningAgent) reloadOutcome(t *testing.T) bool {
	t.Helper()
	okBefore := strings.Count(ra.logs.String(), "configuration reloaded")
	failBefore := strings.Count(ra.logs.String(), "reload failed")
	ra.reload <- struct{}{}
	var ok bool
	waitUntil(t, 30*time.Second, "the reload's outcome", func() bool {
		logs := ra.logs.String()
		ok = strings.Count(logs, "configuration reloaded") > okBefore
		return ok || strings.Count(logs, "reload failed") > failBefore
	})
	return ok
}

// TestReloadAndConfigCheckRefuseTheSameFiles: every file a reload refuses,
// `config check` refuses too, with the same message, and the refused
// reload keeps polling every device of the running inventory (issue 8:
// empty file, no devices, a library that does not exist, a desk secret
// file that does not exist).
func TestReloadAndConfigCheckRefuseTheSameFiles(t *testing.T) {
	s := newSite(t, 2, "")
	good, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ra := startAgent(t, s.config)
	waitUntil(t, 15*time.Second, "first poll", func() bool { return strings.Contains(ra.metrics(t), `hsm_up{device="hsm-1"`) })

	goodText := string(good)
	devices := goodText[strings.Index(goodText, "devices:\n"):strings.Index(goodText, "desks:")]
	library := between(goodText, "    library: ", "\n")
	missingSecret := filepath.Join(s.dir, "no-such-secret")
	cases := []struct {
		name, file string
		want       string // in the reload's log and in config check's output
		checkOK    bool   // config check accepts it (only the reload rule is about the running inventory)
	}{
		{"empty", "", "the file is empty or holds only comments", false},
		{"comments only", "# state_dir: /x\n# devices: []\n", "the file is empty or holds only comments", false},
		{"no devices", strings.Replace(goodText, devices, "devices: []\n", 1), "refusing a reload that would stop watching every HSM", true},
		{"library missing", strings.Replace(goodText, library, `"`+filepath.Join(s.dir, "no-such-pkcs11.so")+`"`, 1),
			"modules[0].library: cannot load " + filepath.Join(s.dir, "no-such-pkcs11.so"), false},
		{"desk secret missing", strings.Replace(goodText, "desks:\n", "desks:\n  - {name: vendor, type: webhook, role: vendor, url: \"https://support.example/hook\", secret_file: \""+missingSecret+"\"}\n", 1),
			missingSecret, false},
	}
	for _, tc := range cases {
		if err := os.WriteFile(s.config, []byte(tc.file), 0o644); err != nil {
			t.Fatal(err)
		}
		if ra.reloadOutcome(t) {
			t.Errorf("%s: the reload was applied", tc.name)
			continue
		}
		logs := ra.logs.String()
		if last := logs[strings.LastIndex(logs, "reload failed"):]; !strings.Contains(last, tc.want) {
			t.Errorf("%s: the reload's error lacks %q:\n%s", tc.name, tc.want, last)
		}
		m := ra.metrics(t)
		if !strings.Contains(m, "hsm_agent_config_last_reload_successful 0") {
			t.Errorf("%s: reload_successful is not 0", tc.name)
		}
		if !strings.Contains(m, `hsm_up{device="hsm-0"`) || !strings.Contains(m, `hsm_up{device="hsm-1"`) {
			t.Errorf("%s: devices vanished after a refused reload", tc.name)
		}
		var out, errOut bytes.Buffer
		code := CLI.ConfigCheck(s.config, &out, &errOut)
		switch {
		case tc.checkOK && code != 0:
			t.Errorf("%s: config check exit %d, want 0: %s", tc.name, code, errOut.String())
		case !tc.checkOK && (code != 1 || !strings.Contains(errOut.String(), tc.want)):
			t.Errorf("%s: config check exit %d, want 1 with %q: %s%s", tc.name, code, tc.want, out.String(), errOut.String())
		}
	}

	// Polling went on with the running configuration: a good file applies.
	if err := os.WriteFile(s.config, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if !ra.reloadOutcome(t) {
		t.Fatalf("the good file was refused:\n%s", ra.logs.String())
	}
	waitUntil(t, 10*time.Second, "reload_successful 1", func() bool {
		return strings.Contains(ra.metrics(t), "hsm_agent_config_last_reload_successful 1")
	})
}

// between returns the text of s after the first start up to end.
func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	return s[:strings.Index(s, end)]
}
