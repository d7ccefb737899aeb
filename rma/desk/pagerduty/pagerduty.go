// Package pagerduty is the PagerDuty desk: a pager (role pager) that
// turns a case's page into a PagerDuty alert through the public Events API
// v2 (POST https://events.pagerduty.com/v2/enqueue, or desks[].url) and
// resolves it when the case ends.
//
//   - case.page: event_action "trigger" with dedup_key = the case's dedup
//     key, so a resend, a restart or a second agent adds to the same alert
//     (PagerDuty deduplicates open alerts by dedup_key); the summary says
//     whom to call (the vendor's support line) and the vendor's ticket
//     reference, and custom_details carry the case facts (serial, device,
//     model, firmware, environment, pool impact, tier, contract ID,
//     requested firmware, shipping details).
//   - case.closed and case.cancelled: event_action "resolve" with the same
//     dedup_key.
//   - Other events are not for a pager and are accepted without a request.
//
// Severity to PagerDuty severity:
//
//	severity  payload.severity
//	1         critical
//	2         error
//	3         warning
//	4         info
//
// `hsm-agent desk test`: the Events API has no read call a routing key may
// make, so the test sends a clearly marked alert ("hsm-agent desk test: not
// a real case", severity info, dedup_key "hsm-agent-desk-test-<time>") and
// resolves it at once: two requests that prove the key and the network.
// Whoever is on call may see it appear and resolve; the answer says so.
package pagerduty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// Severity is the Events API v2 severity of a case severity (the table in
// the package doc); info for anything else.
func Severity(severity int) string {
	switch severity {
	case 1:
		return "critical"
	case 2:
		return "error"
	case 3:
		return "warning"
	}
	return "info"
}

// maxSummary is the Events API's limit on payload.summary.
const maxSummary = 1024

// Options are what a pagerduty desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Timeout bounds one request when the desk's timeout is not set.
	Timeout time.Duration
	// Transport replaces the default one; for tests.
	Transport http.RoundTripper
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Desk is one configured PagerDuty desk. It prints as its name, never its
// routing key.
type Desk struct {
	name      string
	url       *url.URL
	key       string
	rate      int
	userAgent string
	now       func() time.Time
	client    *deskhttp.HTTPClient
	log       *slog.Logger
}

// New builds the pagerduty desk cfg describes and reads its routing key
// (systemd credential desk_<name>.routing_key first, else
// routing_key_file).
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	raw := cfg.URL
	if raw == "" {
		raw = config.DefaultPagerDutyURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to the Events API v2 endpoint, e.g. %s", cfg.Name, config.DefaultPagerDutyURL)
	}
	hopts := deskhttp.HTTPOptions{Timeout: opts.Timeout, Transport: opts.Transport, Now: opts.Now}
	if cfg.Timeout > 0 {
		hopts.Timeout = cfg.Timeout
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	cred := config.CredentialName(config.CredentialDeskRoutingKey, cfg.Name)
	key, source, err := config.ReadCredential(cred, cfg.RoutingKeyFile)
	if err != nil {
		return nil, fmt.Errorf("desk %q: routing_key_file: %w", cfg.Name, err)
	}
	d := &Desk{name: cfg.Name, url: u, key: strings.TrimSpace(key.Reveal()), rate: cfg.RatePerMinute,
		userAgent: "hsm-agent/" + version, now: opts.Now, client: deskhttp.NewHTTPClient(hopts), log: logger.With("desk", cfg.Name)}
	if d.now == nil {
		d.now = time.Now
	}
	d.log.Info("pagerduty routing key loaded", "source", source, "credential", cred)
	return d, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// String names the desk without its routing key.
func (d Desk) String() string { return "pagerduty desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the routing key.
func (d Desk) GoString() string { return d.String() }

// Format prints String for every verb.
func (d Desk) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, d.String()) }

// Event is an Events API v2 alert event.
type Event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key"`
	Payload     *Payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
}

// Payload is a trigger's payload.
type Payload struct {
	Summary       string            `json:"summary"`
	Source        string            `json:"source"`
	Severity      string            `json:"severity"`
	Timestamp     string            `json:"timestamp,omitempty"`
	Component     string            `json:"component,omitempty"`
	Group         string            `json:"group,omitempty"`
	Class         string            `json:"class,omitempty"`
	CustomDetails map[string]string `json:"custom_details,omitempty"`
}

// Send delivers one case event with one request (see the package doc) and
// returns the alert's dedup_key.
func (d *Desk) Send(ctx context.Context, m desk.Message) (ticketID string, retryable bool, err error) {
	t, err := desk.ParseTicket(m.Body)
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: outbox row %d: %w", d.name, m.Delivery.ID, err)}
	}
	if t.Test {
		return d.test(ctx)
	}
	key := t.Case.DedupKey
	if key == "" {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: case %s has no dedup key for its alert", d.name, t.Case.ID)}
	}
	switch {
	case t.Event == rma.EventPage:
		return d.enqueue(ctx, Event{EventAction: "trigger", DedupKey: key, Payload: d.payload(t)})
	case t.Closing():
		return d.enqueue(ctx, Event{EventAction: "resolve", DedupKey: key})
	}
	d.log.Debug("event is not for a pager; nothing sent", "case", t.Case.ID, "event", t.Event)
	return "", false, nil
}

// payload is the trigger payload of a page.
func (d *Desk) payload(t desk.Ticket) *Payload {
	c := t.Case
	details := map[string]string{}
	for _, f := range t.Facts() {
		details[f.Label] = f.Value
	}
	p := Payload{
		Summary: pageSummary(t), Source: firstOf(c.Device, c.Serial, "hsm-agent"), Severity: Severity(c.Severity),
		Timestamp: d.now().UTC().Format(time.RFC3339), Component: c.Serial, Group: firstOf(c.Pool, c.Environment),
		Class: string(c.Kind) + "/" + c.Fault, CustomDetails: details,
	}
	if pg := t.Page; pg != nil {
		details["Page"] = pg.Text
		details["Call"] = firstOf(pg.Phone, desk.NotReported)
		details["Vendor reference"] = firstOf(pg.VendorRef, desk.NotReported)
	}
	return &p
}

// pageSummary says what failed, whom to call and the vendor's reference.
func pageSummary(t desk.Ticket) string {
	c := t.Case
	call, ref := "no vendor support line is configured", "no vendor ticket yet"
	if pg := t.Page; pg != nil {
		if pg.Phone != "" {
			call = "call the vendor on " + pg.Phone
		}
		if pg.VendorRef != "" {
			ref = "vendor ticket " + pg.VendorRef
		}
	}
	s := fmt.Sprintf("[S%d] HSM %s (serial %s): %s: %s, %s", c.Severity, c.Device, c.Serial, c.Summary, call, ref)
	if r := []rune(s); len(r) > maxSummary {
		s = string(r[:maxSummary-3]) + "..."
	}
	return s
}

// firstOf returns the first non-blank value.
func firstOf(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// enqueue posts one event and returns its dedup_key.
func (d *Desk) enqueue(ctx context.Context, ev Event) (string, bool, error) {
	ev.RoutingKey, ev.Client = d.key, "hsm-agent"
	raw, err := json.Marshal(ev)
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: %w", d.name, err)}
	}
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}, "User-Agent": {d.userAgent}}
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{Method: http.MethodPost, URL: d.url, Header: h, Body: raw})
	if err != nil {
		return "", retryable, fmt.Errorf("desk %q: %s%w", d.name, hint(err), err)
	}
	var ans struct {
		DedupKey string `json:"dedup_key"`
	}
	if resp.BodyErr == nil {
		_ = json.Unmarshal(resp.Body, &ans) // the event is accepted either way
	}
	if ans.DedupKey == "" {
		ans.DedupKey = ev.DedupKey
	}
	return ans.DedupKey, false, nil
}

// hint says what a failed request means at PagerDuty.
func hint(err error) string {
	var e *desk.Error
	if !errors.As(err, &e) {
		return ""
	}
	switch {
	case e.Status == http.StatusBadRequest:
		return "PagerDuty refused the event (an invalid routing key or event): check routing_key_file: "
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		return "auth failed: check routing_key_file: "
	case e.Status == 0 && (e.Reason == desk.ReasonConnection || e.Reason == desk.ReasonTimeout):
		return "network: PagerDuty could not be reached: "
	}
	return ""
}

// test triggers and resolves a clearly marked test alert.
func (d *Desk) test(ctx context.Context) (string, bool, error) {
	now := d.now().UTC()
	key := "hsm-agent-desk-test-" + now.Format("20060102T150405Z")
	trigger := Event{EventAction: "trigger", DedupKey: key, Payload: &Payload{
		Summary: desk.TestSummary + " (sent by `hsm-agent desk test`; resolved at once)", Source: "hsm-agent",
		Severity: "info", Timestamp: now.Format(time.RFC3339), Class: "desk.test",
	}}
	if _, retryable, err := d.enqueue(ctx, trigger); err != nil {
		return "", retryable, fmt.Errorf("desk test trigger: %w", err)
	}
	if _, retryable, err := d.enqueue(ctx, Event{EventAction: "resolve", DedupKey: key}); err != nil {
		return "", retryable, fmt.Errorf("desk test resolve (the test alert %s stays open; resolve it in PagerDuty): %w", key, err)
	}
	return key + " (a test alert, triggered and resolved at once: the Events API has no read-only call)", false, nil
}
