// Package webhook is the webhook desk: it POSTs each case event as the JSON
// of design.md ("Webhook desk event") to one URL, with an Idempotency-Key
// that is the same on every attempt, and signs it per the Standard Webhooks
// scheme (webhook-id, webhook-timestamp, webhook-signature) and with
// X-Hsm-Agent-Signature when the desk has a secret_file.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	"unicode"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
)

// Header names the webhook desk sends.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = "X-Hsm-Agent-Signature" // "sha256=<hex HMAC-SHA256 of the body>"
	HeaderWebhookID      = "webhook-id"            // Standard Webhooks: the idempotency key
	HeaderWebhookTime    = "webhook-timestamp"     // Standard Webhooks: unix seconds of the try
	HeaderWebhookSig     = "webhook-signature"     // Standard Webhooks: "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
)

// SecretPrefix marks a Standard Webhooks secret: the rest is the key in
// base64. A secret without it is used as the key byte for byte.
const SecretPrefix = "whsec_"

// maxTicketID bounds the ticket ID kept from an answer.
const maxTicketID = 200

// Options are what a webhook desk takes beyond its configuration, as plain
// data; zero values take the defaults.
type Options struct {
	// Version goes into the User-Agent: hsm-agent/<Version> ("dev" when
	// empty).
	Version string
	// Timeout bounds one request, answer included, when the desk's
	// timeout setting is not set (default 10 s).
	Timeout time.Duration
	// Transport replaces the default one (proxy from the environment, the
	// system's root CAs, TLS 1.2 or later); for tests.
	Transport http.RoundTripper
	// Now is the clock of the signature timestamps (time.Now when nil).
	Now func() time.Time
}

// Desk is one configured webhook desk. It prints as its name, never its key.
type Desk struct {
	name      string
	url       *url.URL
	rate      int
	userAgent string
	key       []byte // nil without secret_file
	client    *deskhttp.HTTPClient
	now       func() time.Time
	log       *slog.Logger
}

// New builds the webhook desk cfg describes. With secret_file it reads the
// secret (from $CREDENTIALS_DIRECTORY when systemd passed it under the file's
// base name, else from the file) and logs which source it used, never the
// secret.
func New(cfg config.Desk, logger *slog.Logger, opts Options) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("desk %q: url is not an http or https URL; set desks[].url to e.g. https://support.example/hooks/hsm", cfg.Name)
	}
	hopts := deskhttp.HTTPOptions{Timeout: opts.Timeout, Transport: opts.Transport, Now: opts.Now}
	if cfg.Timeout > 0 {
		hopts.Timeout = cfg.Timeout
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	client := deskhttp.NewHTTPClient(hopts)
	d := &Desk{
		name:      cfg.Name,
		url:       u,
		rate:      cfg.RatePerMinute,
		userAgent: "hsm-agent/" + version,
		client:    client,
		now:       client.Options().Now, // the client's clock, defaults filled in
		log:       logger.With("desk", cfg.Name),
	}
	if cfg.SecretFile != "" {
		secret, source, err := config.ReadCredential(config.CredentialName(config.CredentialDeskSecret, cfg.Name), cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("desk %q: secret_file: %w", cfg.Name, err)
		}
		key, err := ParseSecret(secret)
		if err != nil {
			return nil, fmt.Errorf("desk %q: secret in %s (%s): %w", cfg.Name, cfg.SecretFile, source, err)
		}
		d.key = key
		logger.Info("webhook signing secret loaded", "desk", cfg.Name, "source", source,
			"credential", config.CredentialName(config.CredentialDeskSecret, cfg.Name))
		if len(key) < 24 {
			logger.Warn("webhook signing secret is shorter than the 24 bytes Standard Webhooks asks for; use a longer random secret",
				"desk", cfg.Name, "bytes", len(key))
		}
	}
	return d, nil
}

// ParseSecret turns a configured secret into the HMAC key: "whsec_<base64>"
// (the Standard Webhooks form) is decoded, anything else is used as is.
func ParseSecret(s config.Secret) ([]byte, error) {
	v := strings.TrimSpace(s.Reveal())
	rest, ok := strings.CutPrefix(v, SecretPrefix)
	if !ok {
		return []byte(v), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// No detail from the decoder: it would quote the secret's bytes.
		return nil, errors.New("the part after whsec_ is not valid base64; write the secret exactly as the desk gave it")
	}
	if len(key) == 0 {
		return nil, errors.New("whsec_ secret is empty after its prefix")
	}
	return key, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// Signed reports whether the desk signs its requests.
func (d *Desk) Signed() bool { return d.key != nil }

// String names the desk without its key.
func (d Desk) String() string { return "webhook desk " + strconv.Quote(d.name) }

// GoString is String, so %#v never walks into the key.
func (d Desk) GoString() string { return d.String() }

// Format prints String for every verb, so no verb walks into the key.
func (d Desk) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, d.String()) }

// Send POSTs m.Body once and reports whether a later attempt may succeed
// (408, 429, 5xx and connection errors; the outbox worker schedules it,
// honouring the Retry-After in the *desk.Error); other 4xx are final. A 2xx
// answer may carry {"ticket_id": "..."}, which is returned.
func (d *Desk) Send(ctx context.Context, m desk.Message) (ticketID string, retryable bool, err error) {
	id := m.Delivery.IdempotencyKey
	if id == "" {
		id = rma.IdempotencyKey(m.Delivery.CaseID, m.Delivery.Seq)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.userAgent)
	h.Set(HeaderIdempotencyKey, id)
	var prepare func(*http.Request) error
	if d.key != nil {
		h.Set(HeaderSignature, "sha256="+BodySignature(d.key, m.Body))
		h.Set(HeaderWebhookID, id)
		body := m.Body
		prepare = func(r *http.Request) error {
			// Every attempt gets its own timestamp and signature
			// (the spec's timestamp is the attempt's), never a new id.
			ts := strconv.FormatInt(d.now().Unix(), 10)
			r.Header = r.Header.Clone()
			r.Header.Set(HeaderWebhookTime, ts)
			r.Header.Set(HeaderWebhookSig, StandardSignature(d.key, id, ts, body))
			return nil
		}
	}
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{
		Method: http.MethodPost, URL: d.url, Header: h, Body: m.Body, Prepare: prepare,
	})
	if err != nil {
		return "", retryable, err
	}
	ticket, terr := ParseTicketID(resp.Body)
	if terr == nil {
		terr = resp.BodyErr
	}
	if terr != nil {
		d.log.Warn("desk accepted the case event but its answer is unusable: the ticket ID is lost (the delivery stands; find the ticket at the desk by the idempotency key)",
			"case", m.Delivery.CaseID, "sequence", m.Delivery.Seq, "idempotency_key", id, "status", resp.Status, "err", terr)
	}
	return ticket, false, nil
}

// BodySignature is the hex HMAC-SHA256 of body (X-Hsm-Agent-Signature
// carries it as "sha256=<hex>").
func BodySignature(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// StandardSignature is the Standard Webhooks signature "v1,<base64 of
// HMAC-SHA256(key, id + "." + timestamp + "." + body)>".
func StandardSignature(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TicketID reads {"ticket_id": ...} (a string or a number) from a 2xx
// answer; "" when the answer has none or is not JSON (the desk still has
// the event).
func TicketID(body []byte) string {
	s, _ := ParseTicketID(body)
	return s
}

// ParseTicketID is TicketID that also says when the answer is malformed:
// a body that looks like JSON (starts with '{') but does not parse, or a
// ticket_id that is neither a string nor a number. An empty or plain-text
// answer, or JSON without ticket_id, is no error: that desk gives no ticket
// IDs. The ID is printable, trimmed, and at most 200 characters.
func ParseTicketID(body []byte) (string, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return "", nil
	}
	var a struct {
		TicketID json.RawMessage `json:"ticket_id"`
	}
	if err := json.Unmarshal(trimmed, &a); err != nil {
		return "", fmt.Errorf("the answer is not valid JSON: %w", err)
	}
	if len(a.TicketID) == 0 || string(a.TicketID) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(a.TicketID, &s) != nil {
		var n json.Number
		if json.Unmarshal(a.TicketID, &n) != nil {
			return "", errors.New("ticket_id in the answer is neither a string nor a number")
		}
		s = n.String()
	}
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s))
	if r := []rune(s); len(r) > maxTicketID {
		s = string(r[:maxTicketID])
	}
	return s, nil
}
