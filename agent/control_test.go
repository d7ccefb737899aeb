package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// controlSite is a one-token site whose diagnostics command leaves a mark
// each time it runs, so a test sees whether a request ran it.
func controlSite(t *testing.T) (s *e2eSite, mark string) {
	t.Helper()
	s = newE2ESite(t, 1)
	mark = filepath.Join(s.dir, "diagnostics-ran")
	s.write(t, siteConfig{
		Settings: fmt.Sprintf("diagnostics:\n  commands:\n    - {name: mark, command: [sh, -c, 'echo x >> %s'], timeout: 5s}\n", mark),
		Devices:  s.device(0, "hsm-0", "environment: development"),
		Desks:    fmt.Sprintf("  - {name: ops, type: spool, role: internal, dir: %q}\n", filepath.Join(s.dir, "spool")),
	}, testTimings)
	return s, mark
}

// request sends method path with Host host over TCP to the agent.
func (ra *runningAgent) request(t *testing.T, method, path, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ra.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestControlCallsNeedTheSocket: POST /api/v1/bundles/{serial} over TCP,
// from this very host, with or without a foreign Host, and a GET of it,
// are refused and run nothing; the same call through the control socket
// (what `hsm-agent bundle` uses) builds the bundle. A DNS-rebound Host
// cannot read /api/v1/* either.
func TestControlCallsNeedTheSocket(t *testing.T) {
	t.Parallel()
	s, mark := controlSite(t)
	ra := startE2E(t, s)
	serial := s.serial(0)
	bundles := filepath.Join(s.dir, "state", BundleDirName)

	for _, c := range []struct{ method, host string }{
		{http.MethodPost, ""},                  // any local user, or a browser's CSRF form post
		{http.MethodPost, "evil.example:9842"}, // DNS rebinding
		{http.MethodGet, ""},
	} {
		code, body := ra.request(t, c.method, "/api/v1/bundles/"+serial, c.host)
		if code != http.StatusForbidden && code != http.StatusUnauthorized && code != http.StatusMethodNotAllowed {
			t.Errorf("%s /api/v1/bundles/%s (Host %q) over TCP: %d %s; want it refused", c.method, serial, c.host, code, body)
		}
	}
	if code, body := ra.request(t, http.MethodGet, "/api/v1/cases", "evil.example"); code != http.StatusForbidden {
		t.Errorf("GET /api/v1/cases with a rebound Host: %d %s; want 403", code, body)
	}
	if code, body := ra.request(t, http.MethodGet, "/api/v1/cases", "localhost:9842"); code != http.StatusOK {
		t.Errorf("GET /api/v1/cases with Host localhost: %d %s; want 200", code, body)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("a refused request ran the diagnostics commands")
	}
	if entries, _ := os.ReadDir(bundles); len(entries) != 0 {
		t.Errorf("a refused request built a bundle: %v", entries)
	}

	// The control socket: owner and group only, and it does the work.
	sock := filepath.Join(s.dir, "state", ControlSocketName)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("control socket %s has mode %v, want a socket with 0660", sock, fi.Mode())
	}
	files := onDemandBundle(t, ra, serial)
	if _, ok := files["commands/mark.txt"]; !ok {
		t.Errorf("the bundle built through the socket lacks its command output")
	}
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the bundle built through the socket did not run the diagnostics command: %v", err)
	}
}

// TestIdleConnectionFloodIsCapped holds more idle keep-alive connections
// than MaxHTTPConns: the agent serves at most MaxHTTPConns of them (the
// rest wait in the kernel's queue, costing it no descriptor) and answers
// again once they are gone.
func TestIdleConnectionFloodIsCapped(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, "")
	ra := startAgent(t, s.config)
	addr := strings.TrimPrefix(ra.url, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	served := 0
	for range MaxHTTPConns + 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Every connection that gets an answer stays open (keep-alive); count them.
	buf := make([]byte, 512)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, _ := c.Read(buf); n > 0 && strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			served++
		}
	}
	if served > MaxHTTPConns {
		t.Errorf("the agent served %d idle connections at once, want at most %d", served, MaxHTTPConns)
	}
	if served == 0 {
		t.Error("the agent served none of the connections")
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitUntil(t, 30*time.Second, "/metrics to answer after the flood", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ra.url+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
