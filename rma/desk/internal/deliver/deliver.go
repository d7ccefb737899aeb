// Package deliver holds what the desk registry (rma/desk) and the desk kinds
// (rma/desk/webhook, rma/desk/spool) share without importing each other: the
// Message a desk sends, the typed delivery Error whose Reason becomes a metric
// label, the one function that decides which HTTP statuses retry, and the
// one-request HTTP client every HTTP desk uses. rma/desk re-exports these
// names; nothing outside rma/desk can import this package.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
)

// Message is one case event on its way to one desk.
type Message struct {
	// Delivery is the outbox row being delivered (its IdempotencyKey is sent
	// on every attempt).
	Delivery rma.Delivery
	// Body is the final JSON desk event: the row's payload plus sent_at and
	// the bundle (design.md, "Webhook desk event").
	Body []byte
}

// Reason classifies a failed delivery attempt; it is the "result" label of
// hsm_desk_deliveries_total (next to "success").
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

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date) as a
// wait from now, capped at limit. ok is false when the header is absent or
// unreadable.
func ParseRetryAfter(h http.Header, now time.Time, limit time.Duration) (wait time.Duration, ok bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if limit > 0 && secs > int64(limit/time.Second) {
			return limit, true
		}
		wait = time.Duration(math.MaxInt64) // no cap and more seconds than a Duration holds
		if secs <= math.MaxInt64/int64(time.Second) {
			wait = time.Duration(secs) * time.Second
		}
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0, false
		}
		wait = max(t.Sub(now), 0)
	}
	if limit > 0 && wait > limit {
		wait = limit
	}
	return wait, true
}

// TransportError classifies an error of an HTTP round trip (no answer) and
// wraps it with only the request URL's scheme and host: what remains is
// "METHOD REDACTED-URL: cause".
func TransportError(method string, u *url.URL, err error) *Error {
	reason := ReasonConnection
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		reason = ReasonTimeout
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &Error{Reason: reason, Err: fmt.Errorf("%s %s: %w", method, RedactURL(u), cause)}
}

// RedactURL is what of u may appear in logs and errors: its scheme and
// host (config.RedactURL; tokens hide in paths and queries).
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return config.RedactURL(u.String())
}
