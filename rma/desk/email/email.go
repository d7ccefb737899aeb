// Package email is the email desk: it sends each case event as one e-mail
// through an SMTP relay (github.com/wneessen/go-mail), one thread per case.
//
// The case's first message has the deterministic Message-ID
// <hsm-case-CASEID@DOMAIN> (DOMAIN is the From address's domain); every
// later event has <hsm-case-CASEID.SEQ@DOMAIN> with In-Reply-To and
// References pointing at the first, so mail clients and help desks that
// take e-mail keep one thread per case, and a resend of the same event
// carries the same Message-ID. Every message has "Auto-Submitted:
// auto-generated" (RFC 3834) so that nobody's auto-responder answers it.
//
// Severity mapping: e-mail has no priority field that desks honour, so the
// subject states it, "[SEV1] ..." to "[SEV4] ..."; a desk that ingests
// e-mail logs it at its default (usually severity 3), which is why
// configuration refuses e-mail as the only vendor channel without a pager.
//
// The diagnostics bundle is attached when it is at most
// max_attachment_bytes (default config.DefaultMaxAttachmentBytes); a larger
// one, or one held for approval, is named in the body instead.
//
// Failures: a connection or TLS error and an SMTP 4xx reply retry; a 5xx
// reply (auth refused, sender or recipient refused) parks the event. The
// error says which step failed: connect, TLS, auth, sender, recipient or
// data.
package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// DefaultTimeout bounds one delivery (connect, TLS, auth and send) when the
// desk's timeout setting is not set.
const DefaultTimeout = 30 * time.Second

// Options are what an email desk takes beyond its configuration.
type Options struct {
	// Version goes into the User-Agent header ("dev" when empty).
	Version string
	// RootCAs replaces the CAs trusted for the relay (ca_file, else the
	// system's); for tests.
	RootCAs *x509.CertPool
}

// Desk is an email desk.
type Desk struct {
	name, host, from, domain string
	port                     int
	to                       []string
	tlsMode                  string
	username                 string
	password                 config.Secret
	maxAttach                int64
	timeout                  time.Duration
	rate                     int
	version                  string
	tlsConfig                *tls.Config
	log                      *slog.Logger
}

// New builds the email desk cfg describes; it reads the password and the
// CA file at once.
func New(cfg config.Desk, logger *slog.Logger, o Options) (*Desk, error) {
	host, portText, err := net.SplitHostPort(cfg.SMTP)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		return nil, fmt.Errorf("desk %q: smtp %q is not host:port; e.g. smtp.example.com:587", cfg.Name, cfg.SMTP)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("desk %q: from %q is not an e-mail address: %w", cfg.Name, cfg.From, err)
	}
	d := &Desk{name: cfg.Name, host: host, port: port, from: cfg.From, to: cfg.To, tlsMode: cfg.TLS,
		username: cfg.Username, maxAttach: cfg.MaxAttachmentBytes, timeout: cfg.Timeout, rate: cfg.RatePerMinute,
		version: o.Version, log: logger.With("desk", cfg.Name)}
	d.domain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	if d.tlsMode == "" {
		d.tlsMode = config.TLSStartTLS
	}
	if d.maxAttach <= 0 {
		d.maxAttach = config.DefaultMaxAttachmentBytes
	}
	if d.timeout <= 0 {
		d.timeout = DefaultTimeout
	}
	if d.version == "" {
		d.version = "dev"
	}
	roots := o.RootCAs
	if roots == nil && cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("desk %q: ca_file: %w", cfg.Name, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("desk %q: ca_file %s holds no PEM certificate; put the relay's CA certificate there", cfg.Name, cfg.CAFile)
		}
	}
	d.tlsConfig = &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cfg.PasswordFile != "" {
		cred := config.CredentialName(config.CredentialDeskPassword, cfg.Name)
		secret, source, err := config.ReadCredential(cred, cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("desk %q: password_file: %w", cfg.Name, err)
		}
		d.password = secret
		d.log.Info("smtp password loaded", "source", source, "credential", cred)
	}
	return d, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// RatePerMinute returns the desk's rate_per_minute (0: no limit).
func (d *Desk) RatePerMinute() int { return d.rate }

// Send sends m as one e-mail with one SMTP session; the ticket ID is the
// Message-ID of the case's first message (the thread).
func (d *Desk) Send(ctx context.Context, m desk.Message) (string, bool, error) {
	var ev rma.DeskEvent
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk event is not valid JSON: %w", err)}
	}
	msg, err := d.message(ev)
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
	}
	client, err := d.client()
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return "", classify(err), &desk.Error{Reason: reason(err), Err: fmt.Errorf("smtp %s: %s", net.JoinHostPort(d.host, strconv.Itoa(d.port)), describe(err, d.username))}
	}
	return "<" + d.threadID(ev.Case.ID) + ">", false, nil
}

// client builds the go-mail client for one session.
func (d *Desk) client() (*gomail.Client, error) {
	opts := []gomail.Option{gomail.WithPort(d.port), gomail.WithTimeout(d.timeout), gomail.WithTLSConfig(d.tlsConfig)}
	switch d.tlsMode {
	case config.TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case config.TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if d.username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername(d.username), gomail.WithPassword(d.password.Reveal()))
	}
	c, err := gomail.NewClient(d.host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client for %s: %w", d.host, err)
	}
	return c, nil
}
