// Package deskhttp is the HTTP plumbing the HTTP desks (rma/desk/webhook,
// and the ITSM and pager desks to come) share: a client that sends one
// request per call and reads the answer through desk.RetryableStatus, the
// Retry-After reader, and the redaction of desk URLs in errors. It imports
// the seam (rma/desk) like the desks do; nothing outside rma/desk can
// import it.
package deskhttp

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
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

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
func TransportError(method string, u *url.URL, err error) *desk.Error {
	reason := desk.ReasonConnection
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		reason = desk.ReasonTimeout
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &desk.Error{Reason: reason, Err: fmt.Errorf("%s %s: %w", method, RedactURL(u), cause)}
}

// RedactURL is what of u may appear in logs and errors: its scheme and
// host (config.RedactURL; tokens hide in paths and queries).
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return config.RedactURL(u.String())
}
