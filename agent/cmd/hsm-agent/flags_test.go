package main

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// post sends an empty POST and returns the status and body.
func post(url string) (int, string, error) {
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String(), nil
}

// The flags an exporter user reaches for: --config.file, --web.listen-address
// (overriding listen), --log.format and --web.enable-lifecycle with POST
// /-/reload answering the reload's outcome; without the flag, 403.
func TestPrometheusStyleFlags(t *testing.T) {
	cfgFile, _, _ := caseSite(t, 1, "127.0.0.1:1", nil, "") // listen is overridden
	addr := freePort(t)
	d := startDaemonCmd(t, exec.Command(binary, "run", "--config.file", cfgFile, "--web.listen-address", addr,
		"--web.enable-lifecycle", "--log.format", "logfmt"))
	waitMetrics(t, "http://"+addr, "hsm_up{", 30*time.Second)
	if logs := d.String(); !strings.Contains(logs, "level=INFO") || strings.Contains(logs, `"level":`) {
		t.Errorf("--log.format logfmt: logs are not logfmt:\n%s", logs)
	}
	if code, body, err := post("http://" + addr + "/-/reload"); err != nil || code != http.StatusOK {
		t.Errorf("POST /-/reload with a good file: %d %q %v", code, body, err)
	}
	if err := os.WriteFile(cfgFile, []byte("# emptied by mistake\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post("http://" + addr + "/-/reload"); code != http.StatusInternalServerError || !strings.Contains(body, "running configuration is kept") {
		t.Errorf("POST /-/reload with an empty file: %d %q, want 500 keeping the running configuration", code, body)
	}
	waitMetrics(t, "http://"+addr, "hsm_agent_config_last_reload_successful 0", 10*time.Second)

	other, _, _ := caseSite(t, 1, freePort(t), nil, "")
	startDaemonCmd(t, exec.Command(binary, "run", "--config", other))
	b, _ := os.ReadFile(other)
	listen := strings.TrimSuffix(strings.SplitN(strings.SplitN(string(b), "listen: \"", 2)[1], "\"", 2)[0], "/")
	waitMetrics(t, "http://"+listen, "hsm_up{", 30*time.Second)
	if code, body, _ := post("http://" + listen + "/-/reload"); code != http.StatusForbidden || !strings.Contains(body, "--web.enable-lifecycle") {
		t.Errorf("POST /-/reload without --web.enable-lifecycle: %d %q, want 403", code, body)
	}
}
