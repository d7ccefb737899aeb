// Package desk is the seam between the case engine and the desks that
// receive case events: the Desk interface every desk kind implements (one
// sub-package per kind, rma/desk/webhook and rma/desk/spool, each importing
// this package, never the reverse), the Message a desk sends and how its
// body is built, the typed delivery Error whose Reason is a metric label,
// and RetryableStatus, the one rule of which HTTP answers retry. The outbox
// worker that calls the desks is rma/desk/outbox; the registry that builds
// desks from the configuration is in agent.
package desk

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// Message is one case event on its way to one desk: the outbox row and the
// final JSON body (BuildBody).
type Message struct {
	// Delivery is the outbox row being delivered (its IdempotencyKey is sent
	// on every attempt).
	Delivery rma.Delivery
	// Body is the final JSON desk event: the row's payload plus sent_at and
	// the bundle (design.md, "Webhook desk event").
	Body []byte
}

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

// Reason classifies a failed delivery attempt; it is the "result" label of
// hsm_desk_deliveries_total (next to ResultSuccess).
type Reason string

// Reasons of failed attempts.
const (
	ReasonTimeout     Reason = "timeout"      // the attempt timed out, or the desk answered 408: retried
	ReasonConnection  Reason = "connection"   // DNS, refused, reset, TLS: no HTTP answer
	ReasonStatus4xx   Reason = "status_4xx"   // a 4xx other than 408 and 429: never retried, parked
	ReasonStatus5xx   Reason = "status_5xx"   // retried
	ReasonStatus429   Reason = "status_429"   // retried, Retry-After honoured (capped)
	ReasonBadResponse Reason = "bad_response" // an answer that is neither 2xx, 4xx nor 5xx (e.g. a redirect): parked
	ReasonWrite       Reason = "write_error"  // a spool desk could not write its files: retried
	ReasonBundle      Reason = "bundle_error" // the bundle could not be read to build the body: retried
	ReasonInvalid     Reason = "invalid"      // the message itself cannot be sent (bad JSON, bad name): parked
)

// ResultSuccess is the "result" label of a delivered event.
const ResultSuccess = "success"

// Error is a failed delivery attempt with what the outbox worker needs to
// decide and record: the reason (metric label), the HTTP status if any and
// the wait the desk asked for.
type Error struct {
	Reason Reason
	// Status is the HTTP status of the last answer (0 when there was none).
	Status int
	// RetryAfter is the wait the desk asked for with Retry-After (the
	// outbox worker caps it); 0 when it asked for none.
	RetryAfter time.Duration
	// Err is the cause. It never holds a secret.
	Err error
}

// Error returns the cause prefixed with the reason.
func (e *Error) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of a delivery error: the one of an *Error in
// its chain, ReasonTimeout for deadline errors, ReasonConnection otherwise.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	return ReasonConnection
}

// RetryableStatus is the one place that decides which HTTP answers are
// retried: 429, 408 (the desk timed out waiting for the request: reason
// timeout) and every 5xx are (retryable true); every other 4xx is not (the
// delivery is parked); 1xx and 3xx are bad responses (parked: the URL
// needs fixing; a redirect is reported with its Location, never followed).
// ok is true for 2xx.
func RetryableStatus(status int) (ok, retryable bool, reason Reason) {
	switch {
	case status >= 200 && status <= 299:
		return true, false, ""
	case status == http.StatusTooManyRequests:
		return false, true, ReasonStatus429
	case status == http.StatusRequestTimeout:
		return false, true, ReasonTimeout
	case status >= 500 && status <= 599:
		return false, true, ReasonStatus5xx
	case status >= 400 && status <= 499:
		return false, false, ReasonStatus4xx
	default:
		return false, false, ReasonBadResponse
	}
}
