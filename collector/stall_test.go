package collector

import (
	"testing"
	"time"
)

// StallAfter is 3 x poll_interval unless a legitimately slow poll (hung
// tokens killed at probe_timeout) may take longer; Stalled names the first
// module past it and ignores modules not polled yet.
func TestStallAfterAndStalled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ interval, timeout, want time.Duration }{
		{15 * time.Second, 10 * time.Second, 45 * time.Second},
		{5 * time.Second, 10 * time.Second, 35 * time.Second},
		{time.Minute, time.Second, 3 * time.Minute},
	} {
		if got := StallAfter(tc.interval, tc.timeout); got != tc.want {
			t.Errorf("StallAfter(%s, %s) = %s, want %s", tc.interval, tc.timeout, got, tc.want)
		}
	}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s := Snapshot{StallAfter: 45 * time.Second, Modules: []ModuleStatus{
		{Name: "fresh", Polled: true, Start: t0, Duration: time.Second},
		{Name: "new"},
		{Name: "stuck", Polled: true, Start: t0.Add(-time.Minute), Duration: time.Second},
	}}
	if m, ok := s.Stalled(t0.Add(10 * time.Second)); !ok || m.Name != "stuck" {
		t.Errorf("Stalled = %q %v, want stuck", m.Name, ok)
	}
	if m, ok := s.Stalled(t0.Add(-20 * time.Second)); ok {
		t.Errorf("Stalled before the limit = %q, want none", m.Name)
	}
}
