// Package jira is the Jira desk: it files each case as one Jira issue
// (Cloud, Data Center) or one Jira Service Management request, and keeps
// it current. The variant setting chooses the API:
//
//	variant            create                                   text                  auth
//	cloud              POST /rest/api/3/issue                   ADF (description,     Basic email:API token
//	                                                            comments)
//	datacenter         POST /rest/api/2/issue                   plain text            Bearer personal access token
//	servicemanagement  POST /rest/servicedeskapi/request        plain text            Basic email:token with email
//	                   (service_desk_id, request_type_id)                             (Cloud), else Bearer PAT
//
// The platform API version ("N" below) is 3 for cloud and for
// servicemanagement with email (Jira Cloud), else 2.
//
// One Send is one attempt of a few requests, never a retry loop (the
// outbox worker is the one retry layer):
//   - It first searches for an open issue carrying the case's dedup key in
//     a label, Label(key) = "hsm-" + the key with "/" as "_" (labels hold no
//     spaces; other characters are escaped as ~XX): JQL `labels = "…" AND
//     statusCategory != Done` (plus the project for cloud and datacenter)
//     through GET /rest/api/3/search/jql (cloud) or /rest/api/N/search.
//     Nothing is kept locally, so a restart or a second agent finds the same
//     issue; of several, the lowest issue ID is the case's.
//   - No issue: it creates one with the label, the priority by name (the
//     table below) and the case facts in the text, then attaches the
//     diagnostics bundle unless upload: approve withholds it
//     (/rest/api/N/issue/{key}/attachments with X-Atlassian-Token:
//     no-check; servicemanagement: servicedesk/{id}/attachTemporaryFile
//     then request/{key}/attachment).
//   - An issue: a resent case.opened only attaches the bundle if the issue
//     lacks it (a create whose attach failed); every other event is a
//     comment (/rest/api/N/issue/{key}/comment; servicemanagement:
//     request/{key}/comment, public), with the bundle it carries attached
//     unless the issue has a file of that name (case.approved, case.bundle). case.closed and
//     case.cancelled look up the issue's transitions and take the first to
//     a Done status category; when the workflow offers none, the comment
//     says so and the issue stays as it is.
//
// Severity to Jira priority (by name; desks[].priorities overrides any of
// them, e.g. {1: Blocker}):
//
//	severity  priority
//	1         Highest
//	2         High
//	3         Medium
//	4         Low
//
// `hsm-agent desk test` creates nothing: it reads GET /rest/api/N/myself
// (the credentials) and the project (GET /rest/api/N/project/{key}) or the
// service desk and its request type, and says whether auth, permission,
// the project or service desk, or the network failed.
package jira

import (
	"context"
	"encoding/base64"
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

// DefaultPriorities are the Jira priority names by severity (the table in
// the package doc).
var DefaultPriorities = map[int]string{1: "Highest", 2: "High", 3: "Medium", 4: "Low"}

// Priority is the Jira priority name of a severity: overrides first, then
// DefaultPriorities; "" (the project's default) for any other severity.
func Priority(severity int, overrides map[int]string) string {
	if p := strings.TrimSpace(overrides[severity]); p != "" {
		return p
	}
	return DefaultPriorities[severity]
}

// Label is the Jira label that carries a dedup key: "hsm-" + the key with
// "/" as "_"; characters other than letters, digits, "." and "-" (and "_"
// and "~" themselves) become ~XX, so the mapping is one-to-one and the
// label holds no spaces.
func Label(key string) string {
	var b strings.Builder
	b.WriteString("hsm-")
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-':
			b.WriteByte(c)
		case c == '/':
			b.WriteByte('_')
		default:
			fmt.Fprintf(&b, "~%02X", c)
		}
	}
	return b.String()
}

// Options are what a jira desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent ("dev" when empty).
	Version string
	// Timeout bounds one request when the desk's timeout is not set.
	Timeout time.Duration
	// Transport replaces the default one; for tests.
	Transport http.RoundTripper
}

// Desk is one configured Jira desk. It prints as its name, never its secret.
type Desk struct {
	name          string
	variant       string
	base          *url.URL // the site, without a trailing slash
	api           string   // the platform REST API version: "3" or "2"
	project       string
	issueType     string
	serviceDeskID string
	requestTypeID string
	priorities    map[int]string
	rate          int
	userAgent     string
	authz         string // the Authorization header value
	user          string // who the token belongs to, for the test's answer
	client        *deskhttp.HTTPClient
	log           *slog.Logger
}

// New builds the jira desk cfg describes and reads its token (systemd
// credential desk_<name>.token first, else token_file).
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to the Jira base URL, e.g. https://example.atlassian.net", cfg.Name)
	}
	hopts := deskhttp.HTTPOptions{Timeout: opts.Timeout, Transport: opts.Transport}
	if cfg.Timeout > 0 {
		hopts.Timeout = cfg.Timeout
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	d := &Desk{
		name: cfg.Name, variant: cfg.Variant, base: u, api: "2",
		project: cfg.Project, issueType: cfg.IssueType, serviceDeskID: cfg.ServiceDeskID, requestTypeID: cfg.RequestTypeID,
		priorities: cfg.Priorities, rate: cfg.RatePerMinute, userAgent: "hsm-agent/" + version,
		client: deskhttp.NewHTTPClient(hopts), log: logger.With("desk", cfg.Name),
	}
	switch cfg.Variant {
	case config.JiraCloud:
		d.api = "3"
	case config.JiraServiceManagement:
		if cfg.Email != "" {
			d.api = "3"
		}
	case config.JiraDataCenter:
	default:
		return nil, fmt.Errorf("desk %q: variant %q is not a jira variant; set desks[].variant to cloud, datacenter or servicemanagement", cfg.Name, cfg.Variant)
	}
	cred := config.CredentialName(config.CredentialDeskToken, cfg.Name)
	tok, source, err := config.ReadCredential(cred, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("desk %q: token_file: %w", cfg.Name, err)
	}
	token := strings.TrimSpace(tok.Reveal())
	if cfg.Email != "" {
		d.authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.Email+":"+token))
		d.user = cfg.Email
	} else {
		d.authz = "Bearer " + token
		d.user = "the personal access token's user"
	}
	d.log.Info("jira token loaded", "variant", cfg.Variant, "source", source, "credential", cred)
	return d, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// String names the desk without its secret.
func (d Desk) String() string { return "jira desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the secret.
func (d Desk) GoString() string { return d.String() }

// Format prints String for every verb.
func (d Desk) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, d.String()) }

// jsm reports whether the desk files Service Management requests.
func (d *Desk) jsm() bool { return d.variant == config.JiraServiceManagement }

// Send delivers one case event with one attempt (see the package doc) and
// returns the issue key.
func (d *Desk) Send(ctx context.Context, m desk.Message) (ticketID string, retryable bool, err error) {
	t, err := desk.ParseTicket(m.Body)
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: outbox row %d: %w", d.name, m.Delivery.ID, err)}
	}
	if t.Test {
		return d.test(ctx)
	}
	if t.Case.DedupKey == "" {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: case %s has no dedup key to find its issue by", d.name, t.Case.ID)}
	}
	found, ok, retryable, err := d.search(ctx, t.Case.DedupKey)
	if err != nil {
		return "", retryable, err
	}
	if !ok {
		if t.Closing() {
			d.log.Info("no open Jira issue to resolve for the case; nothing to do", "case", t.Case.ID, "event", t.Event)
			return "", false, nil
		}
		return d.open(ctx, t)
	}
	if t.Event == rma.EventOpened {
		// A resend: the issue exists; attach the bundle if the create's
		// attach did not get through.
		if retryable, err := d.attachMissing(ctx, found, t); err != nil {
			return "", retryable, err
		}
		return found.Key, false, nil
	}
	if retryable, err := d.update(ctx, found, t); err != nil {
		return "", retryable, err
	}
	return found.Key, false, nil
}

// open creates the case's issue and attaches the bundle.
func (d *Desk) open(ctx context.Context, t desk.Ticket) (string, bool, error) {
	key, retryable, err := d.create(ctx, t)
	if err != nil {
		return "", retryable, err
	}
	d.log.Info("jira issue created", "case", t.Case.ID, "issue", key)
	if retryable, err := d.attachMissing(ctx, issue{Key: key}, t); err != nil {
		// The issue exists: the retry's search finds it and attaches.
		return "", retryable, fmt.Errorf("desk %q: created issue %s, then: %w", d.name, key, err)
	}
	return key, false, nil
}

// update adds a later event to the issue: a comment, the bundle it
// releases, and on close a transition to Done where the workflow has one.
func (d *Desk) update(ctx context.Context, is issue, t desk.Ticket) (bool, error) {
	var done *transition
	note := ""
	if t.Closing() {
		tr, retryable, err := d.doneTransition(ctx, is.Key)
		if err != nil {
			return retryable, err
		}
		done = tr
		if tr == nil {
			note = "hsm-agent could not resolve this issue: its workflow offers no transition to a Done status from here. Please close it by hand."
		}
	}
	if retryable, err := d.comment(ctx, is.Key, t, note); err != nil {
		return retryable, err
	}
	// The bundle an event carries (case.reopened, case.approved,
	// case.bundle), unless the issue has it already.
	if retryable, err := d.attachMissing(ctx, is, t); err != nil {
		return retryable, err
	}
	if done != nil {
		if retryable, err := d.transition(ctx, is.Key, done.ID); err != nil {
			return retryable, err
		}
		d.log.Info("jira issue resolved", "case", t.Case.ID, "issue", is.Key, "transition", done.Name)
	} else if note != "" {
		d.log.Warn("jira issue left open: no transition to Done", "case", t.Case.ID, "issue", is.Key)
	}
	return false, nil
}
