package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// Defaults of HTTPOptions.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultRetryMax      = 3
	DefaultRetryWaitMin  = 1 * time.Second
	DefaultRetryWaitMax  = 30 * time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
	// maxAnswer bounds how much of an answer is read.
	maxAnswer = 1 << 20
	// maxSnippet bounds how much of an error answer goes into an error.
	maxSnippet = 200
)

// HTTPOptions configures the retrying HTTP client of an HTTP desk. Zero
// values take the defaults.
type HTTPOptions struct {
	// Timeout bounds one HTTP try, answer included (the desk's timeout).
	Timeout time.Duration
	// RetryMax is how many times one Send retries inside itself before it
	// hands the failure back to the outbox worker (which schedules the next
	// attempt); negative means no retry inside Send.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the capped exponential backoff
	// between tries inside one Send. A Retry-After longer than RetryWaitMax
	// ends Send at once: the worker waits instead (capped at MaxRetryAfter).
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxRetryAfter caps any Retry-After a desk sends.
	MaxRetryAfter time.Duration
	// Transport replaces the default one (proxy from the environment, the
	// system's root CAs, TLS 1.2 or later); for tests.
	Transport http.RoundTripper
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (o HTTPOptions) withDefaults() HTTPOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	switch {
	case o.RetryMax == 0:
		o.RetryMax = DefaultRetryMax
	case o.RetryMax < 0:
		o.RetryMax = 0
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	o.RetryWaitMax = max(o.RetryWaitMax, o.RetryWaitMin)
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// HTTPClient sends requests with go-retryablehttp: a few quick retries of
// 429, 5xx and connection errors inside one call, Retry-After honoured and
// capped, redirects not followed, and every final answer checked.
type HTTPClient struct {
	opts HTTPOptions
	http *http.Client
}

// NewHTTPClient returns a client with opts (defaults filled in).
func NewHTTPClient(opts HTTPOptions) *HTTPClient {
	opts = opts.withDefaults()
	rt := opts.Transport
	if rt == nil {
		t := cleanhttp.DefaultPooledTransport() // Proxy: http.ProxyFromEnvironment
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		rt = t
	}
	return &HTTPClient{opts: opts, http: &http.Client{
		Transport: rt,
		Timeout:   opts.Timeout,
		// A desk that redirects has moved: the URL needs fixing, and a POST
		// must not be re-sent somewhere else by itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Options returns the options in force (defaults filled in).
func (c *HTTPClient) Options() HTTPOptions { return c.opts }

// Request is one HTTP request to a desk.
type Request struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
	// Prepare, when set, is called before every try (the first and each
	// retry), e.g. to stamp and sign it.
	Prepare func(r *http.Request) error
}

// Response is a desk's 2xx answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte // at most 1 MiB; nil when BodyErr is set
	// BodyErr says why the answer's body could not be read (cut off, or
	// larger than 1 MiB); the desk still accepted the request.
	BodyErr error
}

// Do sends req, retrying inside the call as the options allow, and returns
// the 2xx answer, or an *Error and whether a later attempt may succeed.
func (c *HTTPClient) Do(ctx context.Context, req Request) (resp *Response, retryable bool, err error) {
	rreq, err := retryablehttp.NewRequestWithContext(ctx, req.Method, req.URL.String(), req.Body)
	if err != nil {
		return nil, false, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("build request to %s: %w", RedactURL(req.URL), err)}
	}
	for k, v := range req.Header {
		rreq.Header[k] = v
	}
	if req.Prepare != nil {
		if err := req.Prepare(rreq.Request); err != nil {
			return nil, false, &Error{Reason: ReasonInvalid, Err: err}
		}
	}
	rc := &retryablehttp.Client{
		HTTPClient:   c.http,
		Logger:       nil, // the worker logs, once per failure streak
		RetryWaitMin: c.opts.RetryWaitMin,
		RetryWaitMax: c.opts.RetryWaitMax,
		RetryMax:     c.opts.RetryMax,
		CheckRetry:   c.checkRetry,
		Backoff:      c.backoff,
		// Keep the last answer: a final 4xx/5xx comes back with a nil
		// error, so the status is always checked below.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		PrepareRetry: req.Prepare,
	}
	hr, err := rc.Do(rreq)
	if err != nil {
		if hr != nil {
			drain(hr.Body)
		}
		return nil, ctx.Err() == nil, TransportError(req.Method, req.URL, err)
	}
	defer drain(hr.Body)
	body, rerr := io.ReadAll(io.LimitReader(hr.Body, maxAnswer+1))
	ok, retryable, reason := RetryableStatus(hr.StatusCode)
	if ok {
		// The desk said 2xx: it has the event. An answer that cannot be
		// read only loses the ticket ID.
		r := &Response{Status: hr.StatusCode, Header: hr.Header, Body: body}
		switch {
		case rerr != nil:
			r.Body, r.BodyErr = nil, fmt.Errorf("reading the %s answer: %w", hr.Status, rerr)
		case len(body) > maxAnswer:
			r.Body, r.BodyErr = nil, fmt.Errorf("the %s answer is larger than %d bytes", hr.Status, maxAnswer)
		}
		return r, false, nil
	}
	e := &Error{Reason: reason, Status: hr.StatusCode,
		Err: fmt.Errorf("%s %s: desk answered %s%s%s", req.Method, RedactURL(req.URL), hr.Status, redirectNote(req.URL, hr), snippet(body))}
	if retryable {
		if wait, ok := ParseRetryAfter(hr.Header, c.opts.Now(), c.opts.MaxRetryAfter); ok {
			e.RetryAfter = wait
		}
	}
	return nil, retryable, e
}

// checkRetry retries what RetryableStatus calls retryable and connection
// errors (but not certificate, scheme or redirect errors), unless the desk
// asks for a wait longer than RetryWaitMax: that wait is the worker's.
func (c *HTTPClient) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		retry, _ := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		return retry, nil
	}
	_, retryable, _ := RetryableStatus(resp.StatusCode)
	if !retryable {
		return false, nil
	}
	if wait, ok := ParseRetryAfter(resp.Header, c.opts.Now(), c.opts.MaxRetryAfter); ok && wait > c.opts.RetryWaitMax {
		return false, nil
	}
	return true, nil
}

// backoff waits what Retry-After asks (checkRetry made sure it is at most
// RetryWaitMax), or min*2^n capped at max, with jitter in its upper half.
func (c *HTTPClient) backoff(lo, hi time.Duration, n int, resp *http.Response) time.Duration {
	if resp != nil {
		if wait, ok := ParseRetryAfter(resp.Header, c.opts.Now(), c.opts.MaxRetryAfter); ok {
			return wait
		}
	}
	return Backoff(lo, hi, n)
}

// Backoff is min*2^n capped at max, with jitter: a random wait in the upper
// half of that, so that agents restarted together do not retry in step.
func Backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 62 {
		if m := lo << n; m > 0 && m < hi {
			d = m
		}
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// redirectNote says where a redirect points (its Location resolved
// against the request URL, redacted like it) and that it was not followed;
// "" for any other answer.
func redirectNote(reqURL *url.URL, hr *http.Response) string {
	if hr.StatusCode < 300 || hr.StatusCode > 399 {
		return ""
	}
	loc := hr.Header.Get("Location")
	if loc == "" {
		return " (a redirect without a Location; not followed)"
	}
	u, err := reqURL.Parse(loc)
	if err != nil {
		return " (a redirect to an unreadable Location; not followed)"
	}
	return " redirecting to " + RedactURL(u) + " (not followed: a POST is not re-sent elsewhere by itself; if the desk moved, set desks[].url to its new address)"
}

// drain reads a little of an answer and closes it, so the connection is reused.
func drain(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}

// snippet quotes the start of an error answer for the error message (a
// desk's 400 often says which field it refused), printable characters only.
func snippet(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(body))
	if r := []rune(s); len(r) > maxSnippet {
		s = string(r[:maxSnippet]) + "..."
	}
	return ": " + s
}
