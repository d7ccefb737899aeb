package agent

import (
	"encoding/json"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// HeaderUnreadableCases lists, comma-separated, the IDs of the cases that
// /api/v1/cases left out because their rows cannot be read (absent when
// every row was read).
const HeaderUnreadableCases = "X-Hsm-Agent-Unreadable-Cases"

// serveHTTP serves srv on ln, with TLS and basic auth when webConfigFile
// (exporter-toolkit format) is set.
func serveHTTP(ln net.Listener, srv *http.Server, webConfigFile string, logger *slog.Logger) error {
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
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !a.coll.Ready() {
			http.Error(w, "not ready: first poll not finished", http.StatusServiceUnavailable)
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
	mux.HandleFunc("POST /api/v1/bundles/{serial}", a.bundleHandler)
	mux.HandleFunc("GET /{$}", a.statusPage)
	return mux
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
// It runs the operator's diagnostics commands, so only local clients (the
// CLI on this host) may ask, whatever address the scrape port listens on.
func (a *Agent) bundleHandler(w http.ResponseWriter, r *http.Request) {
	if !fromLoopback(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "bundles are built on request of local clients only; run `hsm-agent bundle SERIAL` on the agent's host"})
		return
	}
	cfg := a.config()
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

// fromLoopback reports whether the request came from this host.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
