// Package servicenow is the ServiceNow desk (type: servicenow): incidents
// through the Table API. One Send is one attempt of a few requests, never a
// retry loop (the outbox worker retries):
//
//  1. GET /api/now/table/incident?sysparm_query=correlation_id=KEY^active=true
//     finds the case's active incident (correlation_id = the dedup key);
//  2. without one: POST /api/now/table/incident with short_description,
//     description, impact, urgency, correlation_id and assignment_group;
//  3. with one: PATCH /api/now/table/incident/{sys_id} adds the event as
//     work_notes, and on case.closed and case.cancelled resolves it (state
//     6, close_code, close_notes);
//  4. a bundle goes to POST /api/now/attachment/file?table_name=incident&
//     table_sys_id=...&file_name=... on the incident.
//
// Auth is basic (username + password_file) or an OAuth bearer token
// (token_file).
//
// Severity to impact and urgency (ServiceNow derives the priority from
// them; the desk never sets priority):
//
//	severity  impact      urgency     priority (default matrix)
//	1         1 (High)    1 (High)    1 Critical
//	2         1 (High)    2 (Medium)  2 High
//	3         2 (Medium)  2 (Medium)  3 Moderate
//	4         2 (Medium)  3 (Low)     4 Low
//
// `desk test` reads one incident (GET /api/now/table/incident?sysparm_limit=1):
// 401 says auth, 403 says the user lacks read on incident (role itil).
package servicenow

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/tickettext"
)

// Resolution of a closed case's incident.
const (
	StateResolved = "6"
	CloseCode     = "Solved (Permanently)"
)

// ImpactUrgency maps a case severity to the incident's impact and urgency
// (the table in the package doc); anything outside 1-4 is 3's.
func ImpactUrgency(severity int) (impact, urgency string) {
	switch severity {
	case 1:
		return "1", "1"
	case 2:
		return "1", "2"
	case 4:
		return "2", "3"
	default:
		return "2", "2"
	}
}

// Options are what a servicenow desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Transport replaces the default one; for tests.
	Transport http.RoundTripper
}

// Desk is one configured ServiceNow desk. It prints as its name, never its
// credentials.
type Desk struct {
	name      string
	base      *url.URL
	group     string
	rate      int
	auth      string // the Authorization header; never printed
	userAgent string
	client    *deskhttp.HTTPClient
	log       *slog.Logger
}

// New builds the servicenow desk cfg describes and reads its password or
// token (systemd credential desk_NAME.token / desk_NAME.password, or the file).
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to e.g. https://example.service-now.com", cfg.Name)
	}
	var auth string
	switch {
	case cfg.TokenFile != "":
		tok, source, err := config.ReadCredential(config.CredentialName(config.CredentialDeskToken, cfg.Name), cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("desk %q: token_file: %w", cfg.Name, err)
		}
		auth = "Bearer " + tok.Reveal()
		logger.Info("servicenow OAuth token loaded", "desk", cfg.Name, "source", source)
	case cfg.Username != "" && cfg.PasswordFile != "":
		pw, source, err := config.ReadCredential(config.CredentialName(config.CredentialDeskPassword, cfg.Name), cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("desk %q: password_file: %w", cfg.Name, err)
		}
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+pw.Reveal()))
		logger.Info("servicenow password loaded", "desk", cfg.Name, "user", cfg.Username, "source", source)
	default:
		return nil, fmt.Errorf("desk %q: no credentials; set token_file, or username and password_file", cfg.Name)
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	return &Desk{
		name: cfg.Name, base: u, group: cfg.AssignmentGroup, rate: cfg.RatePerMinute, auth: auth,
		userAgent: "hsm-agent/" + version,
		client:    deskhttp.NewHTTPClient(deskhttp.HTTPOptions{Timeout: cfg.Timeout, Transport: opts.Transport}),
		log:       logger.With("desk", cfg.Name),
	}, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// String names the desk without its credentials.
func (d Desk) String() string { return "servicenow desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the credentials.
func (d Desk) GoString() string { return d.String() }

// incident is the part of an incident record the desk reads.
type incident struct {
	SysID  string `json:"sys_id"`
	Number string `json:"number"`
}

// Send delivers one case event with one attempt (see the package doc). It
// returns the incident's number.
func (d *Desk) Send(ctx context.Context, m desk.Message) (string, bool, error) {
	t, err := desk.ReadTicket(d.name, m.Body)
	if err != nil {
		return "", false, err
	}
	ev, key := t.DeskEvent, t.Key()
	if ev.Test {
		return d.test(ctx)
	}
	inc, retryable, err := d.find(ctx, key)
	if err != nil {
		return "", retryable, err
	}
	if inc == nil {
		inc, retryable, err = d.create(ctx, ev, key)
	} else {
		retryable, err = d.update(ctx, inc, ev)
	}
	if err != nil {
		return "", retryable, err
	}
	if retryable, err := d.attach(ctx, inc, ev); err != nil {
		return "", retryable, err
	}
	return inc.Number, false, nil
}

// find returns the case's active incident, or nil.
func (d *Desk) find(ctx context.Context, key string) (*incident, bool, error) {
	var a struct {
		Result []incident `json:"result"`
	}
	q := url.Values{"sysparm_query": {"correlation_id=" + key + "^active=true"},
		"sysparm_fields": {"sys_id,number"}, "sysparm_limit": {"1"}}
	if r, err := d.send(ctx, http.MethodGet, "/api/now/table/incident", q, "", nil, &a); err != nil {
		return nil, r, err
	}
	if len(a.Result) == 0 {
		return nil, false, nil
	}
	return &a.Result[0], false, nil
}

// create opens the incident.
func (d *Desk) create(ctx context.Context, ev rma.DeskEvent, key string) (*incident, bool, error) {
	impact, urgency := ImpactUrgency(ev.Case.Severity)
	rec := map[string]string{
		"short_description":   tickettext.Subject(ev),
		"description":         tickettext.Text(ev),
		"impact":              impact,
		"urgency":             urgency,
		"correlation_id":      key,
		"correlation_display": "hsm-agent",
		"assignment_group":    d.group,
	}
	var a struct {
		Result incident `json:"result"`
	}
	if r, err := d.sendJSON(ctx, http.MethodPost, "/api/now/table/incident", rec, &a); err != nil {
		return nil, r, err
	}
	return &a.Result, false, nil
}

// update adds ev as work notes and resolves the incident on close.
func (d *Desk) update(ctx context.Context, inc *incident, ev rma.DeskEvent) (bool, error) {
	rec := map[string]string{"work_notes": tickettext.Text(ev)}
	if ev.Event == rma.EventClosed || ev.Event == rma.EventCancelled {
		rec["state"] = StateResolved
		rec["close_code"] = CloseCode
		rec["close_notes"] = "hsm-agent: the case was " + ev.Event[len("case."):] + " (" + ev.Case.ID + ")"
	}
	return d.sendJSON(ctx, http.MethodPatch, "/api/now/table/incident/"+url.PathEscape(inc.SysID), rec, nil)
}

// attach uploads the event's bundle to the incident (none when the event
// has no bundle or it is withheld).
func (d *Desk) attach(ctx context.Context, inc *incident, ev rma.DeskEvent) (bool, error) {
	b := ev.Bundle
	if b == nil || b.Withheld || b.ContentBase64 == "" {
		return false, nil
	}
	data, err := base64.StdEncoding.DecodeString(b.ContentBase64)
	if err != nil {
		return false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: bundle %s: %w", d.name, b.Name, err)}
	}
	q := url.Values{"table_name": {"incident"}, "table_sys_id": {inc.SysID}, "file_name": {b.Name}}
	return d.send(ctx, http.MethodPost, "/api/now/attachment/file", q, "application/gzip", data, nil)
}
