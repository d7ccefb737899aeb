// Package alertmanager is the Alertmanager desk: it posts each case as an
// alert to Prometheus Alertmanager's /api/v2/alerts, so a site routes
// cases through the receivers it already has.
//
// The alert has the labels alertname=HSMCase, severity, device, serial and
// case (the case ID), and the annotations summary and description.
// Alertmanager identifies an alert by its labels, so posting it again is
// idempotent: every case event re-posts it, and no lookup is needed. As
// severity is a label, each post also resolves the case's alerts under the
// other severities (a case whose severity changed leaves none firing).
//
// Severity mapping (label severity):
//
//	case severity 1  critical
//	case severity 2  error
//	case severity 3  warning
//	case severity 4  info
//
// endsAt: a closed or cancelled case is posted with endsAt = the close
// time, which resolves the alert. While the case is open the alert's
// endsAt is the event's time plus Horizon (90 days), and every case event
// (updates, confirmations, clears, escalations) re-posts it with a fresh
// endsAt; the choice is a long horizon rather than a desk-side timer so
// that the desk keeps no state and a restarted agent needs none. A case
// with no event for 90 days drops out of Alertmanager while it stays open
// in the agent.
package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
)

// Horizon is how far ahead an open case's alert ends unless re-posted.
const Horizon = 90 * 24 * time.Hour

// AlertName is the alertname label of every case alert.
const AlertName = "HSMCase"

// Severities maps case severity 1-4 to the severity label.
var Severities = map[int]string{1: "critical", 2: "error", 3: "warning", 4: "info"}

// Options are what an Alertmanager desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Transport replaces the default HTTP transport; for tests.
	Transport http.RoundTripper
}

// Desk is an Alertmanager desk.
type Desk struct {
	name, userAgent string
	endpoint        *url.URL
	rate            int
	client          *deskhttp.HTTPClient
	log             *slog.Logger
}

// New builds the Alertmanager desk cfg describes.
func New(cfg config.Desk, logger *slog.Logger, o Options) (*Desk, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/") + "/api/v2/alerts")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("desk %q: url %q is not an http or https URL; e.g. http://alertmanager.example:9093", cfg.Name, cfg.URL)
	}
	version := o.Version
	if version == "" {
		version = "dev"
	}
	return &Desk{name: cfg.Name, endpoint: u, rate: cfg.RatePerMinute, userAgent: "hsm-agent/" + version,
		client: deskhttp.NewHTTPClient(deskhttp.HTTPOptions{Timeout: cfg.Timeout, Transport: o.Transport}),
		log:    logger.With("desk", cfg.Name)}, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's rate_per_minute (0: no limit).
func (d *Desk) RatePerMinute() int { return d.rate }

// Alert is one alert of Alertmanager's API v2 (postableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// AlertOf is the alert of a case event sent at now.
func AlertOf(ev rma.DeskEvent, now time.Time) Alert {
	c := ev.Case
	sev, ok := Severities[c.Severity]
	if !ok {
		sev = "info"
	}
	a := Alert{
		Labels: map[string]string{"alertname": AlertName, "severity": sev, "device": c.Device, "serial": c.Serial, "case": c.ID},
		Annotations: map[string]string{"summary": fmt.Sprintf("[SEV%d] %s", c.Severity, c.Summary),
			"description": strings.TrimSpace(c.Description + "\nEvent: " + ev.Event + "; state " + string(c.State) +
				"; environment " + c.Environment + "; pool impact " + c.Impact + "; tier " + c.Tier)},
		StartsAt: c.OpenedAt.UTC(),
		EndsAt:   now.UTC().Add(Horizon),
	}
	if ev.Test {
		a.Labels["test"] = "true"
		a.EndsAt = now.UTC().Add(5 * time.Minute)
	}
	if ended(ev) {
		a.EndsAt = now.UTC()
		if !c.ClosedAt.IsZero() {
			a.EndsAt = c.ClosedAt.UTC()
		}
	}
	if a.StartsAt.IsZero() || a.StartsAt.After(a.EndsAt) {
		a.StartsAt = a.EndsAt
	}
	return a
}

// AlertsOf is what one event posts: the case's alert (AlertOf) and the
// alerts of the same case under the other severity labels, resolved (their
// endsAt is the case's start). Alertmanager identifies an alert by its labels, so a case whose
// severity changed would otherwise leave its old alert firing.
func AlertsOf(ev rma.DeskEvent, now time.Time) []Alert {
	cur := AlertOf(ev, now)
	out := []Alert{cur}
	for _, sev := range []int{1, 2, 3, 4} {
		if Severities[sev] == cur.Labels["severity"] {
			continue
		}
		a := cur
		a.Labels = maps.Clone(cur.Labels)
		a.Labels["severity"] = Severities[sev]
		// Resolved at its start: a time surely past on Alertmanager's
		// clock too (Alertmanager keeps a later endsAt of a firing alert
		// over one that is not yet past when it arrives).
		a.EndsAt = a.StartsAt
		out = append(out, a)
	}
	return out
}

// ended reports whether the event ends the case.
func ended(ev rma.DeskEvent) bool {
	return ev.Event == rma.EventClosed || ev.Event == rma.EventCancelled || ev.Case.State.Terminal()
}

// Send posts the case's alert with one request; the ticket ID is the case
// label.
func (d *Desk) Send(ctx context.Context, m desk.Message) (string, bool, error) {
	var ev rma.DeskEvent
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk event is not valid JSON: %w", err)}
	}
	now := time.Now()
	if t, err := time.Parse(time.RFC3339, ev.SentAt); err == nil {
		now = t
	}
	body, err := json.Marshal(AlertsOf(ev, now))
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
	}
	h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {d.userAgent}}
	if _, retry, err := d.client.Do(ctx, deskhttp.Request{Method: http.MethodPost, URL: d.endpoint, Header: h, Body: body}); err != nil {
		return "", retry, err
	}
	return AlertName + "{case=" + strconv.Quote(ev.Case.ID) + "}", false, nil
}
