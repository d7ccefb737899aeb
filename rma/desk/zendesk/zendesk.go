// Package zendesk is the Zendesk Support desk (type: zendesk). One Send is
// one attempt of a few requests, never a retry loop (the outbox worker
// retries):
//
//  1. GET /api/v2/tickets.json?external_id=KEY finds the case's ticket
//     (external_id = the case's dedup key) that is not solved or closed;
//  2. without one: the bundle goes to POST /api/v2/uploads.json?filename=
//     (its token), then POST /api/v2/tickets.json with an Idempotency-Key,
//     the priority, external_id and the text in the first comment with the
//     upload token;
//  3. with one: PUT /api/v2/tickets/{id}.json adds the event as a private
//     comment (with the bundle when it comes later) and sets status solved
//     on case.closed and case.cancelled.
//
// Auth is API token auth: basic "{email}/token:{token}".
//
// Severity to priority:
//
//	severity  priority
//	1         urgent
//	2         high
//	3         normal
//	4         low
//
// `desk test` reads GET /api/v2/users/me.json: an anonymous answer means
// the credentials were refused, an end-user role lacks the agent permission.
package zendesk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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

// Options are what a zendesk desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Transport replaces the default one; for tests.
	Transport http.RoundTripper
}

// Desk is one configured Zendesk desk. It prints as its name, never its token.
type Desk struct {
	name      string
	base      *url.URL
	rate      int
	auth      string // "Basic ..."; never printed
	userAgent string
	client    *deskhttp.HTTPClient
	log       *slog.Logger
}

// New builds the zendesk desk cfg describes and reads its token
// ($CREDENTIALS_DIRECTORY/desk-token-NAME or token_file).
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to e.g. https://example.zendesk.com", cfg.Name)
	}
	if cfg.Email == "" {
		return nil, fmt.Errorf("desk %q: email is not set; set desks[].email to the Zendesk agent's login", cfg.Name)
	}
	tok, source, err := config.ReadCredential(config.CredentialName(config.CredentialDeskToken, cfg.Name), cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("desk %q: token_file: %w", cfg.Name, err)
	}
	logger.Info("zendesk API token loaded", "desk", cfg.Name, "source", source)
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	return &Desk{
		name:      cfg.Name,
		base:      u,
		rate:      cfg.RatePerMinute,
		auth:      "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Email+"/token:"+tok.Reveal())),
		userAgent: "hsm-agent/" + version,
		client:    deskhttp.NewHTTPClient(deskhttp.HTTPOptions{Timeout: cfg.Timeout, Transport: opts.Transport}),
		log:       logger.With("desk", cfg.Name),
	}, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// String names the desk without its token.
func (d Desk) String() string { return "zendesk desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the token.
func (d Desk) GoString() string { return d.String() }

// ticket is the part of a Zendesk ticket the desk reads.
type ticket struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

// Send delivers one case event with one attempt (see the package doc).
func (d *Desk) Send(ctx context.Context, m desk.Message) (string, bool, error) {
	in, err := desk.ReadTicket(d.name, m.Body)
	if err != nil {
		return "", false, err
	}
	ev, key := in.DeskEvent, in.Key()
	if ev.Test {
		return d.test(ctx)
	}
	t, retryable, err := d.find(ctx, key)
	if err != nil {
		return "", retryable, err
	}
	uploads, retryable, err := d.upload(ctx, ev)
	if err != nil {
		return "", retryable, err
	}
	if t == nil {
		return d.create(ctx, m, ev, key, uploads)
	}
	return d.update(ctx, t.ID, ev, uploads)
}

// find returns the case's ticket that is neither solved nor closed, or nil.
func (d *Desk) find(ctx context.Context, key string) (*ticket, bool, error) {
	var a struct {
		Tickets []ticket `json:"tickets"`
	}
	q := url.Values{"external_id": {key}}
	if r, err := d.do(ctx, http.MethodGet, "/api/v2/tickets.json", q, "", nil, &a); err != nil {
		return nil, r, err
	}
	for i := range a.Tickets {
		if s := a.Tickets[i].Status; s != "solved" && s != "closed" {
			return &a.Tickets[i], false, nil
		}
	}
	return nil, false, nil
}

// upload sends the event's bundle to the Uploads API and returns its token
// (none when the event has no bundle or it is withheld).
func (d *Desk) upload(ctx context.Context, ev rma.DeskEvent) ([]string, bool, error) {
	b := ev.Bundle
	if b == nil || b.Withheld || b.ContentBase64 == "" {
		return nil, false, nil
	}
	data, err := base64.StdEncoding.DecodeString(b.ContentBase64)
	if err != nil {
		return nil, false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: bundle %s: %w", d.name, b.Name, err)}
	}
	var a struct {
		Upload struct {
			Token string `json:"token"`
		} `json:"upload"`
	}
	if r, err := d.do(ctx, http.MethodPost, "/api/v2/uploads.json", url.Values{"filename": {b.Name}}, "application/binary", data, &a); err != nil {
		return nil, r, err
	}
	if a.Upload.Token == "" {
		return nil, true, &desk.Error{Reason: desk.ReasonBundle, Err: fmt.Errorf("desk %q: the Uploads API answered without a token", d.name)}
	}
	return []string{a.Upload.Token}, false, nil
}

// create opens the ticket, with the delivery's idempotency key.
func (d *Desk) create(ctx context.Context, m desk.Message, ev rma.DeskEvent, key string, uploads []string) (string, bool, error) {
	body := map[string]any{"ticket": map[string]any{
		"subject":     tickettext.Subject(ev),
		"priority":    Priority(ev.Case.Severity),
		"external_id": key,
		"tags":        []string{"hsm-agent"},
		"comment":     map[string]any{"body": tickettext.Text(ev), "uploads": uploads},
	}}
	idem := m.Delivery.IdempotencyKey
	if idem == "" {
		idem = rma.IdempotencyKey(m.Delivery.CaseID, m.Delivery.Seq)
	}
	var a struct {
		Ticket ticket `json:"ticket"`
	}
	if r, err := d.doJSON(ctx, http.MethodPost, "/api/v2/tickets.json", idem, body, &a); err != nil {
		return "", r, err
	}
	return strconv.FormatInt(a.Ticket.ID, 10), false, nil
}

// update adds the event to ticket id as a private comment and solves it
// when the case closed or was cancelled.
func (d *Desk) update(ctx context.Context, id int64, ev rma.DeskEvent, uploads []string) (string, bool, error) {
	t := map[string]any{"comment": map[string]any{"body": tickettext.Text(ev), "public": false, "uploads": uploads}}
	if ev.Event == rma.EventClosed || ev.Event == rma.EventCancelled {
		t["status"] = "solved"
	}
	ref := strconv.FormatInt(id, 10)
	if r, err := d.doJSON(ctx, http.MethodPut, "/api/v2/tickets/"+ref+".json", "", map[string]any{"ticket": t}, nil); err != nil {
		return "", r, err
	}
	return ref, false, nil
}

// test proves the credentials with GET /api/v2/users/me.json.
func (d *Desk) test(ctx context.Context) (string, bool, error) {
	var a struct {
		User struct {
			ID   *int64 `json:"id"`
			Role string `json:"role"`
		} `json:"user"`
	}
	if r, err := d.do(ctx, http.MethodGet, "/api/v2/users/me.json", nil, "", nil, &a); err != nil {
		var de *desk.Error
		if errors.As(err, &de) && (de.Status == http.StatusUnauthorized || de.Status == http.StatusForbidden) {
			return "", r, fmt.Errorf("auth: check email and token_file: %w", err)
		}
		return "", r, fmt.Errorf("network or URL: %w", err)
	}
	if a.User.ID == nil {
		return "", false, errors.New("auth: Zendesk answered as the anonymous user; check email and token_file (and that token access is enabled)")
	}
	if a.User.Role == "end-user" {
		return "", false, errors.New("permission: the user is an end-user; tickets need an agent or admin")
	}
	return "user " + strconv.FormatInt(*a.User.ID, 10) + " (" + a.User.Role + ")", false, nil
}

// doJSON sends v as JSON.
func (d *Desk) doJSON(ctx context.Context, method, path, idem string, v, out any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
	}
	return d.send(ctx, method, path, nil, "application/json", idem, b, out)
}

// do sends one request without an idempotency key.
func (d *Desk) do(ctx context.Context, method, path string, q url.Values, ctype string, body []byte, out any) (bool, error) {
	return d.send(ctx, method, path, q, ctype, "", body, out)
}

// send sends one request through deskhttp and decodes a 2xx answer into out.
func (d *Desk) send(ctx context.Context, method, path string, q url.Values, ctype, idem string, body []byte, out any) (bool, error) {
	u := d.base.JoinPath(path)
	u.RawQuery = q.Encode()
	h := http.Header{}
	h.Set("Authorization", d.auth)
	h.Set("User-Agent", d.userAgent)
	h.Set("Accept", "application/json")
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	if idem != "" {
		h.Set("Idempotency-Key", idem)
	}
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{Method: method, URL: u, Header: h, Body: body})
	if err != nil {
		return retryable, err
	}
	if out == nil {
		return false, nil
	}
	if resp.BodyErr != nil {
		return true, &desk.Error{Reason: desk.ReasonBadResponse, Status: resp.Status, Err: resp.BodyErr}
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return false, &desk.Error{Reason: desk.ReasonBadResponse, Status: resp.Status,
			Err: fmt.Errorf("%s %s: the answer is not the JSON Zendesk documents: %w", method, deskhttp.RedactURL(u), err)}
	}
	return false, nil
}
