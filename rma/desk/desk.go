// Package desk delivers case events to desks: the Desk interface every desk
// kind implements (one sub-package per kind: webhook, spool), the registry
// New that builds a desk from its configuration, the assembly of the final
// event body; the outbox worker is rma/desk/outbox.
package desk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deliver"
	"github.com/hsm-agent/hsm-agent/rma/desk/spool"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// Message is one case event on its way to one desk: the outbox row and the
// final JSON body (BuildBody).
type Message = deliver.Message

// Desk is a destination for case events.
type Desk interface {
	// Name is the desk's configured name (the outbox rows' desk).
	Name() string
	// Send delivers m with one attempt (one request for an HTTP desk):
	// the outbox worker is the one retry layer.
	// On success it returns the desk's ticket ID if it gave one. On
	// failure retryable says whether a later attempt may succeed (429,
	// 5xx, connection errors) or the event must be parked (other 4xx);
	// err is then usually an *Error, whose Reason is the metric label and
	// whose RetryAfter is the wait the desk asked for.
	Send(ctx context.Context, m Message) (ticketID string, retryable bool, err error)
}

// RateLimited is implemented by desks with a configured rate_per_minute;
// the worker spaces their deliveries accordingly.
type RateLimited interface {
	RatePerMinute() int
}

// Error is a failed delivery attempt: Reason (the metric label), the HTTP
// Status if any, the RetryAfter the desk asked for, and the cause.
type Error = deliver.Error

// Reason classifies a failed delivery attempt.
type Reason = deliver.Reason

// Reasons of failed attempts: the "result" label values of
// hsm_desk_deliveries_total besides ResultSuccess.
const (
	ReasonTimeout     = deliver.ReasonTimeout
	ReasonConnection  = deliver.ReasonConnection
	ReasonStatus4xx   = deliver.ReasonStatus4xx
	ReasonStatus5xx   = deliver.ReasonStatus5xx
	ReasonStatus429   = deliver.ReasonStatus429
	ReasonBadResponse = deliver.ReasonBadResponse
	ReasonWrite       = deliver.ReasonWrite
	ReasonBundle      = deliver.ReasonBundle
	ReasonInvalid     = deliver.ReasonInvalid
)

// ResultSuccess is the "result" label of a delivered event.
const ResultSuccess = "success"

// ReasonOf returns the Reason of a Send error.
func ReasonOf(err error) Reason { return deliver.ReasonOf(err) }

// RetryableStatus is the one function that decides which HTTP statuses
// retry: 429 and 5xx do, other 4xx do not (parked), 1xx/3xx are bad
// responses (parked); ok is true for 2xx.
func RetryableStatus(status int) (ok, retryable bool, reason Reason) {
	return deliver.RetryableStatus(status)
}

// HTTPOptions tunes the HTTP client of HTTP desks.
type HTTPOptions = deliver.HTTPOptions

// Option adjusts how New builds desks.
type Option func(*options)

type options struct {
	version string
	http    deliver.HTTPOptions
}

// WithVersion sets the agent version sent in the User-Agent of HTTP desks
// ("hsm-agent/<version>"); the agent passes agent.Version.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithHTTPOptions tunes the HTTP client of HTTP desks; the desk's timeout
// setting still wins over o.Timeout, and a nil o.Transport keeps
// WithTransport's.
func WithHTTPOptions(o HTTPOptions) Option {
	return func(x *options) {
		if o.Transport == nil {
			o.Transport = x.http.Transport
		}
		x.http = o
	}
}

// WithTransport replaces the HTTP transport of HTTP desks (default: proxy
// from the environment, the system's root CAs); for tests.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.http.Transport = rt }
}

// New builds the desk cfg describes, by cfg.Type. It reads the desk's
// secret at once (an unreadable secret is an error now, not at the first
// case).
func New(cfg config.Desk, logger *slog.Logger, opts ...Option) (Desk, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Each case returns nil, not a nil pointer in a non-nil interface.
	switch cfg.Type {
	case config.DeskWebhook:
		d, err := webhook.New(cfg, logger, webhook.Options{Version: o.version, HTTP: o.http})
		if err != nil {
			return nil, err
		}
		return d, nil
	case config.DeskSpool:
		d, err := spool.New(cfg, logger)
		if err != nil {
			return nil, err
		}
		return d, nil
	default:
		return nil, fmt.Errorf("desk %q: type %q is not known; use one of %s", cfg.Name, cfg.Type, strings.Join(config.DeskTypes(), ", "))
	}
}

// NewAll builds every configured desk; the error joins every desk's error.
func NewAll(cfgs []config.Desk, logger *slog.Logger, opts ...Option) ([]Desk, error) {
	var (
		desks []Desk
		errs  []error
	)
	for _, c := range cfgs {
		d, err := New(c, logger, opts...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		desks = append(desks, d)
	}
	return desks, errors.Join(errs...)
}
