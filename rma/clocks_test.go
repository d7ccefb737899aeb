package rma

import (
	"maps"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// emea is the EMEA calendar of the clock tests: Easter 2026, Christmas
// 2026 and New Year 2027 off, a 15:00 cut-off.
func emea(t *testing.T) *calendar.Calendar {
	t.Helper()
	var hol []time.Time
	for _, d := range []string{"2026-04-03", "2026-04-06", "2026-12-25", "2026-12-28", "2027-01-01"} {
		v, _ := time.Parse(time.DateOnly, d)
		hol = append(hol, v)
	}
	c, err := calendar.New(calendar.EMEA, calendar.Spec{Holidays: hol, Cutoff: "15:00"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDueDates: the pending vendor clocks of a case by tier, severity and
// the case's event times (support-model.md sections 1 and 3). Times are
// UTC; the calendar is Europe/London (GMT, BST from 29 March 2026).
func TestDueDates(t *testing.T) {
	t.Parallel()
	cal := emea(t)
	for _, tc := range []struct {
		name string
		in   ClockInput
		want map[string]string
	}{
		{"premium-plus severity 1 on a saturday counts wall time",
			ClockInput{Tier: "premium-plus", Severity: 1, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-03-28T10:00:00Z")},
			map[string]string{
				"initial_response":         "2026-03-28T14:00:00Z",
				"update":                   "2026-03-28T12:00:00Z",
				"escalate_support_manager": "2026-03-28T12:00:00Z",
				"escalate_executive":       "2026-03-28T18:00:00Z",
				"escalate_director":        "2026-03-29T10:00:00Z",
				"escalate_unresolved":      "2026-03-31T10:00:00Z",
			}},
		{"premium severity 1 on a saturday counts from monday 08:30 BST",
			ClockInput{Tier: "premium", Severity: 1, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-03-28T10:00:00Z")},
			map[string]string{
				"initial_response":         "2026-03-30T11:30:00Z",
				"update":                   "2026-03-30T09:30:00Z",
				"escalate_support_manager": "2026-03-30T09:30:00Z",
				"escalate_director":        "2026-04-01T14:30:00Z", // 8.5 + 8.5 + 7 business hours
				"escalate_unresolved":      "2026-04-01T16:00:00Z", // three business days
			}},
		{"standard severity 2 before easter",
			ClockInput{Tier: "standard", Severity: 2, Flow: FlowReturnAndRepair, OpenedAt: ts(t, "2026-04-02T15:00:00Z")},
			map[string]string{
				"initial_response":         "2026-04-07T14:30:00Z", // 1 h thursday, 7 h tuesday
				"update":                   "2026-04-07T15:00:00Z", // one business day
				"escalate_support_manager": "2026-04-17T10:30:00Z", // 72 business hours
				"escalate_unresolved":      "2026-04-09T15:00:00Z",
			}},
		{"severity 3 on premium-plus: a week of wall time, raised after 30 calendar days",
			ClockInput{Tier: "premium-plus", Severity: 3, Flow: FlowNone, OpenedAt: ts(t, "2026-03-28T10:00:00Z")},
			map[string]string{
				"initial_response":         "2026-03-28T14:00:00Z",
				"escalate_support_manager": "2026-04-04T10:00:00Z",
				"escalate_unresolved":      "2026-03-31T10:00:00Z",
				"raise_severity":           "2026-04-27T09:00:00Z", // 10:00 GMT -> 10:00 BST
			}},
		{"severity 3 on premium: a week is five business days, over easter",
			ClockInput{Tier: "premium", Severity: 3, Flow: FlowNone, OpenedAt: ts(t, "2026-03-28T10:00:00Z")},
			map[string]string{
				"initial_response":         "2026-03-30T11:30:00Z",
				"escalate_support_manager": "2026-04-07T16:00:00Z",
				"escalate_unresolved":      "2026-04-01T16:00:00Z",
				"raise_severity":           "2026-04-27T09:00:00Z",
			}},
		{"severity 4 on standard: response and the 3-day escalation only",
			ClockInput{Tier: "standard", Severity: 4, Flow: FlowNone, OpenedAt: ts(t, "2026-03-30T08:00:00Z")},
			map[string]string{
				"initial_response":    "2026-03-30T16:00:00Z", // 09:00 BST + 8 h
				"escalate_unresolved": "2026-04-02T08:00:00Z", // 8 + 8.5 + 8.5 + 0.5 business hours
			}},
		{"advance replacement after the vendor shipped: only the faulty return is left",
			ClockInput{Tier: "premium", Severity: 2, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-10-01T09:00:00Z"),
				VendorEvents: []time.Time{ts(t, "2026-10-02T14:30:00Z"), ts(t, "2026-10-01T11:00:00Z"), ts(t, "2026-10-06T12:00:00Z")},
				Reached: map[State]time.Time{StateConfirmed: ts(t, "2026-10-02T14:30:00Z"), StateAuthorized: ts(t, "2026-10-05T09:00:00Z"),
					StateReplacementShipped: ts(t, "2026-10-06T12:00:00Z"), StateReplacementInstalled: ts(t, "2026-10-10T09:00:00Z")}},
			map[string]string{"faulty_return": "2026-11-09T10:00:00Z"}}, // 30 days over the fall back
		{"advance replacement confirmed after the cut-off ships by tuesday",
			ClockInput{Tier: "premium-plus", Severity: 1, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-10-02T09:00:00Z"),
				VendorEvents: []time.Time{ts(t, "2026-10-02T14:30:00Z")},
				Reached:      map[State]time.Time{StateConfirmed: ts(t, "2026-10-02T14:30:00Z")}},
			map[string]string{ // initial_response: met by the confirmation
				"update":                   "2026-10-02T16:30:00Z", // 2 h after the last vendor event
				"replacement_ship":         "2026-10-06T16:00:00Z", // 15:30 BST friday counts from monday
				"escalate_support_manager": "2026-10-02T11:00:00Z",
				"escalate_executive":       "2026-10-02T17:00:00Z",
				"escalate_director":        "2026-10-03T09:00:00Z",
				"escalate_unresolved":      "2026-10-05T09:00:00Z",
			}},
		{"return and repair: 15 business days over christmas",
			ClockInput{Tier: "standard", Severity: 3, Flow: FlowReturnAndRepair, OpenedAt: ts(t, "2026-12-01T10:00:00Z"), ReturnDays: 10,
				VendorEvents: []time.Time{ts(t, "2026-12-01T12:00:00Z")},
				Reached:      map[State]time.Time{StateConfirmed: ts(t, "2026-12-01T12:00:00Z"), StateVendorReceived: ts(t, "2026-12-17T10:00:00Z")}},
			map[string]string{
				"repair_return":       "2027-01-12T17:00:00Z",
				"escalate_unresolved": "2026-12-04T10:00:00Z",
				"raise_severity":      "2026-12-31T10:00:00Z",
			}},
		{"a closed case has no pending clock",
			ClockInput{Tier: "premium", Severity: 1, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-10-01T09:00:00Z"),
				Reached: map[State]time.Time{StateClosed: ts(t, "2026-10-01T10:00:00Z")}},
			map[string]string{}},
		{"no contract, no vendor clock",
			ClockInput{Severity: 1, Flow: FlowNone, OpenedAt: ts(t, "2026-10-01T09:00:00Z")},
			map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for k, v := range DueDates(tc.in, cal) {
				got[k] = v.UTC().Format(time.RFC3339)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("DueDates:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestTargets: done, stopped and missed, for the SLA report and breaches.
func TestTargets(t *testing.T) {
	t.Parallel()
	cal := emea(t)
	in := ClockInput{Tier: "premium", Severity: 2, Flow: FlowAdvanceReplacement, OpenedAt: ts(t, "2026-10-01T09:00:00Z"),
		VendorEvents: []time.Time{ts(t, "2026-10-01T15:00:00Z")},
		Reached: map[State]time.Time{StateConfirmed: ts(t, "2026-10-01T15:00:00Z"), StateReplacementShipped: ts(t, "2026-10-05T12:00:00Z"),
			StateReplacementInstalled: ts(t, "2026-10-06T09:00:00Z"), StateCancelled: ts(t, "2026-11-20T09:00:00Z")}}
	by := map[string]Target{}
	for _, tg := range Targets(in, cal) {
		by[tg.Clock] = tg
	}
	now := ts(t, "2026-12-01T00:00:00Z")
	for _, tc := range []struct {
		clock          string
		due, done      string
		stopped        string
		missed, exists bool
	}{
		// 4 business hours from 10:00 BST end at 14:00 BST; the first
		// vendor event came at 16:00 BST: missed.
		{"initial_response", "2026-10-01T13:00:00Z", "2026-10-01T15:00:00Z", "", true, true},
		// Confirmed thursday 16:00 BST, after the cut-off: counts from
		// friday, due monday 17:00 BST; shipped monday 13:00 BST: met.
		{"replacement_ship", "2026-10-05T16:00:00Z", "2026-10-05T12:00:00Z", "", false, true},
		// Installed 6 October, due 5 November, cancelled 20 November
		// without the return: missed, stopped.
		{"faulty_return", "2026-11-05T10:00:00Z", "", "2026-11-20T09:00:00Z", true, true},
		{"escalate_support_manager", "", "2026-10-05T12:00:00Z", "", false, true},
		{"update", "", "", "", false, false}, // resolved: no more updates owed
		{"escalate_executive", "", "", "", false, false},
	} {
		tg, ok := by[tc.clock]
		if ok != tc.exists {
			t.Errorf("%s: present %v, want %v", tc.clock, ok, tc.exists)
			continue
		}
		if !ok {
			continue
		}
		if tc.due != "" && !tg.Due.Equal(ts(t, tc.due)) {
			t.Errorf("%s: due %v, want %s", tc.clock, tg.Due.UTC(), tc.due)
		}
		if (tc.done == "") != tg.Done.IsZero() || (tc.done != "" && !tg.Done.Equal(ts(t, tc.done))) {
			t.Errorf("%s: done %v, want %q", tc.clock, tg.Done, tc.done)
		}
		if (tc.stopped == "") != tg.Stopped.IsZero() || (tc.stopped != "" && !tg.Stopped.Equal(ts(t, tc.stopped))) {
			t.Errorf("%s: stopped %v, want %q", tc.clock, tg.Stopped, tc.stopped)
		}
		if tg.Missed(now) != tc.missed || tg.Pending() {
			t.Errorf("%s: missed %v pending %v, want missed %v and not pending", tc.clock, tg.Missed(now), tg.Pending(), tc.missed)
		}
	}
	if Targets(in, nil) != nil {
		t.Error("targets without a calendar")
	}
}
