package deskhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// Defaults of HTTPOptions.
const (
	DefaultTimeout = 10 * time.Second
	// maxAnswer bounds how much of an answer is read.
	maxAnswer = 1 << 20
	// maxSnippet bounds how much of an error answer goes into an error.
	maxSnippet = 200
)

// HTTPOptions configures the HTTP client of an HTTP desk. Zero values take
// the defaults. There are no retries here: one Send is one request, and the
// outbox worker (rma/desk/outbox) owns backoff, Retry-After and its cap.
type HTTPOptions struct {
	// Timeout bounds the request, answer included (the desk's timeout).
	Timeout time.Duration
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
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// HTTPClient sends one request per call: redirects are not followed, every
// answer's status goes through desk.RetryableStatus, and the Retry-After of a
// retryable answer is handed back (uncapped) for the worker.
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
	// Prepare, when set, is called on the request just before it is sent,
	// e.g. to stamp and sign it.
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

// Do sends req once and returns the 2xx answer, or an *Error and whether a
// later attempt may succeed.
func (c *HTTPClient) Do(ctx context.Context, req Request) (resp *Response, retryable bool, err error) {
	hreq, err := http.NewRequestWithContext(ctx, req.Method, req.URL.String(), bytes.NewReader(req.Body))
	if err != nil {
		return nil, false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("build request to %s: %w", RedactURL(req.URL), err)}
	}
	for k, v := range req.Header {
		hreq.Header[k] = v
	}
	if req.Prepare != nil {
		if err := req.Prepare(hreq); err != nil {
			return nil, false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
		}
	}
	hr, err := c.http.Do(hreq)
	if err != nil {
		return nil, ctx.Err() == nil, TransportError(req.Method, req.URL, err)
	}
	defer drain(hr.Body)
	body, rerr := io.ReadAll(io.LimitReader(hr.Body, maxAnswer+1))
	ok, retryable, reason := desk.RetryableStatus(hr.StatusCode)
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
	e := &desk.Error{Reason: reason, Status: hr.StatusCode,
		Err: fmt.Errorf("%s %s: desk answered %s%s%s", req.Method, RedactURL(req.URL), hr.Status, redirectNote(req.URL, hr), snippet(body))}
	if retryable {
		if wait, ok := ParseRetryAfter(hr.Header, c.opts.Now(), 0); ok {
			e.RetryAfter = wait
		}
	}
	return nil, retryable, e
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
