package deskhttp

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzParseRetryAfter reads arbitrary Retry-After values under arbitrary
// caps. Properties: no panic; the wait is never negative; it never exceeds
// a positive cap; an unreadable header gives (0, false); and a plain
// number of seconds within the cap is taken exactly.
func FuzzParseRetryAfter(f *testing.F) {
	for _, v := range []string{"", "0", "2", "-1", "3600", "99999999999999999999", "9223372036854775807",
		"Sun, 01 Mar 2026 12:01:30 GMT", "Sun, 01 Mar 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", " 5", "5s", "+5"} {
		f.Add(v, int64(5*time.Minute))
	}
	f.Add("120", int64(0))
	f.Add("120", int64(-1))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string, limit int64) {
		h := http.Header{}
		h.Set("Retry-After", v)
		lim := time.Duration(limit)
		wait, ok := ParseRetryAfter(h, now, lim)
		if wait < 0 {
			t.Fatalf("Retry-After %q, cap %v: negative wait %v", v, lim, wait)
		}
		if lim > 0 && wait > lim {
			t.Fatalf("Retry-After %q: wait %v above the cap %v", v, wait, lim)
		}
		if !ok && wait != 0 {
			t.Fatalf("Retry-After %q: unreadable but wait %v", v, wait)
		}
		if secs, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && secs >= 0 && lim > 0 && secs <= int64(lim/time.Second) {
			if !ok || wait != time.Duration(secs)*time.Second {
				t.Fatalf("Retry-After %q, cap %v: got %v, %v; want %ds exactly", v, lim, wait, ok, secs)
			}
		}
	})
}
