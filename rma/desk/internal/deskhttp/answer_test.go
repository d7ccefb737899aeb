package deskhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	limit := 5 * time.Minute
	for _, tc := range []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"2", 2 * time.Second, true},
		{"0", 0, true},
		{"299", 299 * time.Second, true},
		{"3600", limit, true},              // capped
		{"99999999999999999", limit, true}, // capped, no overflow
		{"-1", 0, false},                   // nonsense
		{"soon", 0, false},                 // nonsense
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(2 * time.Hour).Format(http.TimeFormat), limit, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true}, // in the past: at once
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		got, ok := ParseRetryAfter(h, now, limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: got %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTransportErrorClassifiesAndRedacts(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://user:hunter2@desk.example/hook/pathtoken?token=abc123#frag")
	timeout := &url.Error{Op: "Post", URL: u.String(), Err: &net.OpError{Op: "dial", Err: timeoutErr{}}}
	e := TransportError("POST", u, timeout)
	if e.Reason != desk.ReasonTimeout {
		t.Errorf("reason %q, want timeout", e.Reason)
	}
	refused := &url.Error{Op: "Post", URL: u.String(), Err: errors.New("connect: connection refused")}
	e = TransportError("POST", u, refused)
	if e.Reason != desk.ReasonConnection {
		t.Errorf("reason %q, want connection", e.Reason)
	}
	for _, leak := range []string{"hunter2", "abc123", "token", "frag", "/hook"} {
		if strings.Contains(e.Error(), leak) {
			t.Errorf("error %q leaks %q", e.Error(), leak)
		}
	}
	if !strings.Contains(e.Error(), "https://desk.example") || !strings.Contains(e.Error(), "connection refused") {
		t.Errorf("error %q should name the desk URL and the cause", e.Error())
	}
	if desk.ReasonOf(fmt.Errorf("wrapped: %w", e)) != desk.ReasonConnection {
		t.Error("ReasonOf does not see through wrapping")
	}
	if desk.ReasonOf(context.DeadlineExceeded) != desk.ReasonTimeout {
		t.Error("ReasonOf(DeadlineExceeded) should be timeout")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
