package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// HeaderUnreadableCases lists, comma-separated, the IDs of the cases that
// /api/v1/cases left out because their rows cannot be read (absent when
// every row was read).
const HeaderUnreadableCases = "X-Hsm-Agent-Unreadable-Cases"

// serveHTTP serves srv on ln, at most MaxHTTPConns connections at once,
// with TLS and basic auth when webConfigFile (exporter-toolkit format) is set.
func serveHTTP(ln net.Listener, srv *http.Server, webConfigFile string, logger *slog.Logger) error {
	ln = limitConns(ln, MaxHTTPConns, logger)
	flags := &web.FlagConfig{WebConfigFile: &webConfigFile}
	return web.Serve(ln, srv, flags, logger.With("component", "http"))
}

// handler routes the agent's HTTP endpoints. None of them touches an HSM:
// they all read the collector's last snapshot.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(a.logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("OK\n"))
	})
	mux.HandleFunc("POST /-/reload", a.lifecycleReload)
	mux.HandleFunc("PUT /-/reload", a.lifecycleReload)
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.dbWatch.err(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !a.coll.Ready() {
			http.Error(w, "not ready: first poll not finished", http.StatusServiceUnavailable)
			return
		}
		snap := a.coll.Snapshot()
		if m, stalled := snap.Stalled(a.now()); stalled {
			http.Error(w, fmt.Sprintf("not ready: no poll of module %s completed since %s (more than %s: the poll loop stalled)",
				m.Name, m.LastPoll().UTC().Format(time.RFC3339), snap.StallAfter), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("OK\n"))
	})
	mux.HandleFunc("GET /api/v1/devices", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Reports(a.coll.Snapshot()))
	})
	mux.HandleFunc("GET /api/v1/cases", func(w http.ResponseWriter, r *http.Request) {
		cases, bad, err := a.store.CaseList(r.Context(), r.URL.Query().Get("all") == "")
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		ids := make([]string, 0, len(bad))
		for _, b := range bad {
			a.logger.Error("a case is left out of /api/v1/cases: its row cannot be read", "case", b.ID, "err", b.Err)
			ids = append(ids, b.ID)
		}
		if len(ids) > 0 {
			w.Header().Set(HeaderUnreadableCases, strings.Join(ids, ","))
		}
		writeJSON(w, http.StatusOK, nonNil(cases))
	})
	mux.HandleFunc("GET /api/v1/reports/sla", a.slaReportHandler)
	mux.HandleFunc("GET /api/v1/cases/{id}", a.caseHandler)
	mux.HandleFunc("POST /api/v1/cases/{id}/events", a.caseEventHandler)
	mux.HandleFunc("POST /api/v1/bundles/{serial}", a.bundleHandler)
	mux.HandleFunc("GET /{$}", a.statusPage)
	return a.checkHost(mux)
}

// serveControl serves the agent's endpoints on the control socket
// (ControlSocketName in state_dir), the one way in for control calls, and
// returns its stop step. Without the socket the agent still runs (polling
// never depends on HTTP); the error is logged.
func (a *Agent) serveControl() func(context.Context) error {
	cfg := a.config()
	ln, err := listenControl(cfg.StateDir)
	if err != nil {
		a.logger.Error("no control socket: `hsm-agent bundle` will poll on its own", "err", err)
		return func(context.Context) error { return nil }
	}
	srv := newHTTPServer(a.handler(), a.logger)
	srv.ConnContext = markControl
	go func() {
		if err := srv.Serve(limitConns(ln, 8, a.logger)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("control socket", "err", err)
		}
	}()
	return func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		_ = os.Remove(filepath.Join(cfg.StateDir, ControlSocketName))
		return err
	}
}

// checkHost refuses /api/ requests over TCP whose Host header is a name
// other than localhost, this host's name or the listen host: a browser led
// there by DNS rebinding sends the attacker's name. IP literals cannot be
// rebound and pass.
func (a *Agent) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") && !viaControlSocket(r) && !a.allowedHost(r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "host " + strconv.Quote(r.Host) + " is not this agent's; use its address, localhost or its host name"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHost reports whether a Host header names this agent.
func (a *Agent) allowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" {
		return true
	}
	if lh, _, err := net.SplitHostPort(a.config().Listen); err == nil && strings.EqualFold(lh, host) {
		return true
	}
	name, err := os.Hostname()
	return err == nil && (strings.EqualFold(name, host) || strings.HasPrefix(host, strings.ToLower(name)+"."))
}

var statusTemplate = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>hsm-agent</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.healthy{background:#dfd}.degraded{background:#ffd}.failed,.missing,.unresponsive,.module_error{background:#fdd}</style></head>
<body><h1>hsm-agent {{.Version}}</h1>
<p><a href="/metrics">metrics</a> · <a href="/api/v1/devices">devices (JSON)</a></p>
<table><tr><th>device</th><th>serial</th><th>module</th><th>state</th><th>reason</th><th>firmware</th><th>since</th></tr>
{{range .Devices}}<tr class="{{.State}}"><td>{{.Device}}</td><td>{{.Serial}}</td><td>{{.Module}}</td><td>{{.State}}</td><td>{{.Reason}}</td><td>{{.Firmware}}</td><td>{{.Since}}</td></tr>
{{end}}</table>
{{if .Unexpected}}<h2>Unexpected tokens</h2><table><tr><th>module</th><th>serial</th><th>label</th></tr>
{{range .Unexpected}}<tr><td>{{.Module}}</td><td>{{.Serial}}</td><td>{{.Label}}</td></tr>{{end}}</table>{{end}}
</body></html>`))

// bundleHandler builds an on-demand bundle for `hsm-agent bundle SERIAL`.
// It runs the operator's diagnostics commands and prunes old bundles, so
// it answers only on the control socket, which a browser cannot reach.
func (a *Agent) bundleHandler(w http.ResponseWriter, r *http.Request) {
	cfg := a.config()
	if !viaControlSocket(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "bundles are built only on request through the control socket " +
			filepath.Join(cfg.StateDir, ControlSocketName) + "; run `hsm-agent bundle SERIAL` on the agent's host as its user or group"})
		return
	}
	dev, ok := cfg.DeviceBySerial(r.PathValue("serial"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no device with serial " + r.PathValue("serial") + " in the inventory"})
		return
	}
	res, err := makeBundle(r.Context(), cfg, bundleSource{coll: a.coll, logs: a.logs, inUse: a.store.BundlesInUse}, dev, nil, nil)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	a.logger.Info("on-demand bundle built", "device", dev.Name, "path", res.Path)
	writeJSON(w, http.StatusOK, map[string]any{"path": res.Path, "sha256": res.SHA256, "size": res.Size})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Agent) statusPage(w http.ResponseWriter, _ *http.Request) {
	snap := a.coll.Snapshot()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err := statusTemplate.Execute(w, map[string]any{
		"Version":    Version,
		"Devices":    Reports(snap),
		"Unexpected": unexpectedReports(snap),
	})
	if err != nil {
		a.logger.Error("status page", "err", err)
	}
}

// nonNil makes a nil slice an empty one, so JSON shows [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// lifecycleReload serves POST (and PUT) /-/reload: the same reload as
// SIGHUP, answering 200 when the new configuration runs and 500 with the
// reason when it was refused (the old one keeps running). Without
// --web.enable-lifecycle it answers 403, as Prometheus does.
func (a *Agent) lifecycleReload(w http.ResponseWriter, r *http.Request) {
	if !a.opts.EnableLifecycle {
		http.Error(w, "Lifecycle API is not enabled (start hsm-agent run with --web.enable-lifecycle).", http.StatusForbidden)
		return
	}
	reply := make(chan error, 1)
	select {
	case a.httpReload <- reply:
	case <-r.Context().Done():
		return
	}
	select {
	case err := <-reply:
		if err != nil {
			http.Error(w, "reload failed, the running configuration is kept: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("configuration reloaded\n"))
	case <-r.Context().Done():
	}
}
