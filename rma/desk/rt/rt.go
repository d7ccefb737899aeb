// Package rt is the Request Tracker 5 desk: it files each case as one RT
// ticket through REST2 (/REST/2.0/) and keeps it current.
//
// One Send is one attempt of a few requests, never a retry loop:
//
//   - It first searches the queue's active tickets (TicketSQL, Status =
//     '__Active__') for the case's dedup key: in the custom field named by
//     dedup_field, else in the subject tag "[hsm:<key>]". Nothing is kept
//     locally, so a restart or a second agent finds the same ticket.
//   - No ticket: it creates one (POST /ticket) with the priority of the
//     case's severity and the diagnostics bundle attached (REST2
//     Attachments, base64) unless upload: approve withholds it.
//   - A ticket: the event becomes a comment on it (POST
//     /ticket/{id}/comment; the bundle attached on case.approved,
//     case.bundle and case.reopened), and case.closed or case.cancelled
//     resolve it in the same request (Status: resolved), so a retry never
//     leaves a comment without the resolve. A resent case.opened adds
//     nothing. A case reopened after its ticket was resolved gets a new
//     ticket (the search looks at active tickets only); closing a case
//     without an active ticket is a success that writes nothing.
//
// Duplicates. Search-before-create cannot stop two agents that search at
// the same moment from both creating. So after a create, and whenever a
// search finds more than one active ticket for a key, the rule is: the
// lowest ticket ID wins and stays open; every other one is resolved with a
// comment naming the winner. Every agent applies the same rule to the same
// search result, so exactly one ticket stays open however many raced.
// (With RT on a database that hands out IDs before commit, a racer that
// cannot yet see a lower ticket keeps its own until the next event's
// search, which then resolves it.)
//
// Severity to RT Priority (RT 5's default PriorityAsString is Low 0,
// Medium 50, High 100):
//
//	severity 1  -> 100 (High)
//	severity 2  -> 75
//	severity 3  -> 50  (Medium)
//	severity 4  -> 25
//	other       -> 0   (Low)
//
// `hsm-agent desk test` reads the queue (GET /queue/{name}: proves the
// credentials, that the user may see the queue, and by the "create" link
// REST2 offers only then, that it may create tickets there) and searches it
// (proves the user may see its tickets); it creates no ticket, and says
// whether auth, permission, the queue or the network failed.
package rt

import (
	"context"
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

// Priority maps a case severity to RT's Priority field (the table in the
// package doc).
func Priority(severity int) int {
	switch severity {
	case 1:
		return 100
	case 2:
		return 75
	case 3:
		return 50
	case 4:
		return 25
	}
	return 0
}

// Options are what an rt desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Timeout bounds one request when the desk's timeout is not set.
	Timeout time.Duration
	// Transport replaces the default one; for tests.
	Transport http.RoundTripper
}

// Desk is one configured RT desk. It prints as its name, never its secret.
type Desk struct {
	name       string
	base       *url.URL // .../REST/2.0/
	queue      string
	dedupField string
	rate       int
	userAgent  string
	auth       func(h http.Header)
	client     *deskhttp.HTTPClient
	log        *slog.Logger
}

// New builds the rt desk cfg describes and reads its token or password
// (systemd credential desk_<name>.token / .password first, else the file).
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to the RT base URL, e.g. https://rt.example.com", cfg.Name)
	}
	if !strings.HasSuffix(u.Path, "/REST/2.0") {
		u.Path += "/REST/2.0"
	}
	u.Path += "/"
	hopts := deskhttp.HTTPOptions{Timeout: opts.Timeout, Transport: opts.Transport}
	if cfg.Timeout > 0 {
		hopts.Timeout = cfg.Timeout
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	d := &Desk{
		name: cfg.Name, base: u, queue: cfg.Queue, dedupField: cfg.DedupField, rate: cfg.RatePerMinute,
		userAgent: "hsm-agent/" + version, client: deskhttp.NewHTTPClient(hopts),
		log: logger.With("desk", cfg.Name),
	}
	if err := d.loadAuth(cfg); err != nil {
		return nil, err
	}
	return d, nil
}

// loadAuth reads the token (Authorization: token ...) or the basic-auth
// password and logs which source it used, never the secret.
func (d *Desk) loadAuth(cfg config.Desk) error {
	if cfg.TokenFile != "" {
		cred := config.CredentialName(config.CredentialDeskToken, cfg.Name)
		tok, source, err := config.ReadCredential(cred, cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("desk %q: token_file: %w", cfg.Name, err)
		}
		v := "token " + strings.TrimSpace(tok.Reveal())
		d.auth = func(h http.Header) { h.Set("Authorization", v) }
		d.log.Info("rt auth token loaded", "source", source, "credential", cred)
		return nil
	}
	cred := config.CredentialName(config.CredentialDeskPassword, cfg.Name)
	pw, source, err := config.ReadCredential(cred, cfg.PasswordFile)
	if err != nil {
		return fmt.Errorf("desk %q: password_file: %w", cfg.Name, err)
	}
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(cfg.Username, strings.TrimRight(pw.Reveal(), "\r\n"))
	v := r.Header.Get("Authorization")
	d.auth = func(h http.Header) { h.Set("Authorization", v) }
	d.log.Info("rt password loaded", "user", cfg.Username, "source", source, "credential", cred)
	return nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// String names the desk without its secret.
func (d Desk) String() string { return "rt desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the secret.
func (d Desk) GoString() string { return d.String() }

// Format prints String for every verb.
func (d Desk) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, d.String()) }

// Send delivers one case event with one attempt (see the package doc) and
// returns the RT ticket ID.
func (d *Desk) Send(ctx context.Context, m desk.Message) (ticketID string, retryable bool, err error) {
	ev, err := parseEvent(m.Body)
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: outbox row %d: %w", d.name, m.Delivery.ID, err)}
	}
	if ev.Test {
		return d.test(ctx)
	}
	if ev.Case.DedupKey == "" {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: case %s has no dedup key to find its ticket by", d.name, ev.Case.ID)}
	}
	ids, retryable, err := d.search(ctx, ev.Case.DedupKey)
	if err != nil {
		return "", retryable, err
	}
	if len(ids) == 0 {
		if closing(ev.Event) {
			d.log.Info("no active RT ticket to resolve for the case; nothing to do", "case", ev.Case.ID, "event", ev.Event)
			return "", false, nil
		}
		return d.open(ctx, ev)
	}
	if retryable, err := d.resolveDuplicates(ctx, ids); err != nil {
		return "", retryable, err
	}
	id := ids[0]
	if ev.Event == rma.EventOpened {
		return id, false, nil // a resend: the ticket has it already
	}
	if retryable, err := d.comment(ctx, id, ev); err != nil {
		return "", retryable, err
	}
	return id, false, nil
}

// closing reports whether event ends the case (the ticket is resolved).
func closing(event string) bool {
	return event == rma.EventClosed || event == rma.EventCancelled
}

// open creates the case's ticket, then applies the duplicate rule to what
// a second search finds, and returns the ticket that stays open.
func (d *Desk) open(ctx context.Context, ev event) (string, bool, error) {
	created, retryable, err := d.create(ctx, ev)
	if err != nil {
		return "", retryable, err
	}
	ids, retryable, err := d.search(ctx, ev.Case.DedupKey)
	if err != nil {
		// The ticket exists; the retry's search finds it and tidies up.
		return "", retryable, fmt.Errorf("desk %q: created ticket %s, then: %w", d.name, created, err)
	}
	if len(ids) == 0 {
		return created, false, nil // RT does not show it yet; it exists
	}
	if retryable, err := d.resolveDuplicates(ctx, ids); err != nil {
		return "", retryable, err
	}
	if ids[0] != created {
		d.log.Info("another agent opened the case's ticket first; ours is resolved as its duplicate",
			"case", ev.Case.ID, "ticket", ids[0], "duplicate", created)
	}
	return ids[0], false, nil
}

// resolveDuplicates resolves every ticket of ids (ascending) but the first,
// with a comment naming it: the lowest ID wins.
func (d *Desk) resolveDuplicates(ctx context.Context, ids []string) (bool, error) {
	for _, dup := range ids[1:] {
		body := map[string]any{
			"Content": fmt.Sprintf("Duplicate of ticket #%s for the same hsm-agent case (opened at the same time by another agent). "+
				"Resolved in its favour: follow the case there.", ids[0]),
			"ContentType": "text/plain",
			"Status":      "resolved",
		}
		if _, retryable, err := d.post(ctx, "ticket/"+dup+"/comment", body); err != nil {
			return retryable, err
		}
	}
	return false, nil
}
