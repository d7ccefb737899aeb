package rma

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// reportCase is a vendor case of device dev opened at opened, with its
// state events (state=RFC3339) in the log.
func reportCase(t *testing.T, id, dev, tier string, sev int, opened string, state State, events ...string) CaseLog {
	t.Helper()
	c := Case{ID: id, Device: dev, Serial: "SN-" + dev, Kind: KindHardware, Fault: "failed", Severity: sev,
		Tier: tier, Flow: FlowFor(tier), State: state, OpenedAt: ts(t, opened)}
	log := []Event{{CaseID: id, Seq: 1, Type: EventOpened, At: c.OpenedAt, Actor: ActorAgent}}
	for i, e := range events {
		what, at, _ := strings.Cut(e, "=")
		typ, actor := StateEvent(State(what)), "operator:alice"
		if what == "note" {
			typ, actor = EventNote, "desk:vendor"
		}
		log = append(log, Event{CaseID: id, Seq: i + 2, Type: typ, At: ts(t, at), Actor: actor})
		if State(what).Terminal() {
			c.ClosedAt = ts(t, at)
		}
	}
	return CaseLog{Case: c, Events: log}
}

func reportDevices() []config.Device {
	var out []config.Device
	for i, tier := range []string{"premium-plus", "premium", "standard"} {
		out = append(out, config.Device{Name: tier, Serial: "SN-" + tier,
			Contract: config.Contract{ID: fmt.Sprintf("C-%d", i+1), Tier: tier, Region: calendar.EMEA}})
	}
	return out
}

// rowKey names a row in the report test: case/clock, and #n for the n-th
// update target.
func rowKey(rows []SLARow) map[string]SLARow {
	out := map[string]SLARow{}
	n := map[string]int{}
	for _, r := range rows {
		k := r.CaseID + "/" + r.Clock
		if r.Clock == ClockUpdate {
			n[k]++
			k = fmt.Sprintf("%s#%d", k, n[k])
		}
		out[k] = r
	}
	return out
}

// TestSLAReport: the report of cases opened on Friday 20 March 2026 at
// 15:00 (London is on GMT), two business hours before the EMEA office
// closes for the weekend, and reported on Monday 23 March at 16:00.
// Premium-plus counts the weekend (wall time), premium and standard do
// not (business time); standard has targets but no credits.
func TestSLAReport(t *testing.T) {
	t.Parallel()
	const fri = "2026-03-20T15:00:00Z"
	cases := []CaseLog{
		// premium-plus: the vendor confirmed on saturday 10:00, 19 h of
		// wall time after the opening (due after 4 h), authorized on
		// monday 12:00 (more than a day after the last update) and
		// shipped the replacement at 13:00.
		reportCase(t, "PP", "premium-plus", "premium-plus", 2, fri, StateReplacementShipped,
			"confirmed=2026-03-21T10:00:00Z", "authorized=2026-03-23T12:00:00Z", "replacement_shipped=2026-03-23T13:00:00Z"),
		// premium: 2 business hours on friday and 2 on monday make the
		// response due monday 10:30; confirmed at 10:00 (before the 15:00
		// cut-off), so the replacement ships by tuesday 17:00.
		reportCase(t, "P", "premium", "premium", 2, fri, StateReplacementShipped,
			"confirmed=2026-03-23T10:00:00Z", "replacement_shipped=2026-03-24T12:00:00Z"),
		// standard: 8 business hours from friday 15:00 is monday 14:30,
		// a business day is monday 15:00; no vendor event by 16:00.
		reportCase(t, "S", "standard", "standard", 2, fri, StateOpen),
		// premium-plus opened an hour before the report: pending.
		reportCase(t, "NEW", "premium-plus", "premium-plus", 3, "2026-03-23T15:00:00Z", StateOpen),
		// premium cancelled after an hour (the fault cleared): its targets
		// were never reached, nothing was missed.
		reportCase(t, "CX", "premium", "premium", 2, "2026-03-23T09:00:00Z", StateCancelled, "cancelled=2026-03-23T10:00:00Z"),
		// a vendor desk's note answers the initial response.
		reportCase(t, "NOTE", "premium", "premium", 3, "2026-03-23T09:00:00Z", StateOpen, "note=2026-03-23T11:00:00Z"),
		// a device no longer in the inventory: left out, with the reason.
		reportCase(t, "GONE", "removed", "premium", 2, fri, StateOpen),
	}
	op := reportCase(t, "OP", "premium", "premium", 2, fri, StateOpen)
	op.Case.Kind, op.Case.Flow = KindOperational, FlowNone // internal only: no vendor targets
	cases = append(cases, op)
	expired := reportCase(t, "EXP", "premium", "premium", 2, fri, StateOpen)
	expired.Case.Reason = "contract C-2 expired" // no vendor case
	cases = append(cases, expired)

	rows, left := SLAReport(ReportInput{Cases: cases, Policy: Policy{Devices: reportDevices(), Desks: []Desk{{Name: "vendor", Role: config.RoleVendor}},
		Calendars: map[string]*calendar.Calendar{calendar.EMEA: emea(t)}}, Now: ts(t, "2026-03-23T16:00:00Z")})
	got := rowKey(rows)
	for _, r := range rows {
		t.Logf("%s %s %s due %s done %s %s", r.CaseID, r.Clock, r.Status, r.Due.Format(time.RFC3339), r.Done.Format(time.RFC3339), r.ElapsedText)
	}

	for _, tc := range []struct {
		key, status, due, done, elapsed, counting string
		credit                                    bool
	}{
		{"PP/initial_response", SLAMissed, "2026-03-20T19:00:00Z", "2026-03-21T10:00:00Z", "19h0m0s", CountWall, true},
		{"PP/update#1", SLAMet, "2026-03-21T15:00:00Z", "2026-03-21T10:00:00Z", "19h0m0s", CountWall, true},
		{"PP/update#2", SLAMissed, "2026-03-22T10:00:00Z", "2026-03-23T12:00:00Z", "50h0m0s", CountWall, true},
		{"PP/update#3", SLAMet, "2026-03-24T12:00:00Z", "2026-03-23T13:00:00Z", "1h0m0s", CountWall, true},
		{"PP/replacement_ship", SLAMet, "2026-03-24T17:00:00Z", "2026-03-23T13:00:00Z", "51h0m0s", CountWall, true},
		{"PP/faulty_return", SLANotReached, "", "", "0s", CountWall, true},
		{"PP/escalate_support_manager", SLAMet, "2026-03-23T15:00:00Z", "2026-03-23T13:00:00Z", "70h0m0s", CountWall, true},
		{"P/initial_response", SLAMet, "2026-03-23T10:30:00Z", "2026-03-23T10:00:00Z", "3h30m0s", CountBusiness, true},
		{"P/replacement_ship", SLAMet, "2026-03-24T17:00:00Z", "2026-03-24T12:00:00Z", "10h30m0s", CountBusiness, true},
		{"P/faulty_return", SLANotReached, "", "", "0s", CountBusiness, true},
		{"S/initial_response", SLAMissed, "2026-03-23T14:30:00Z", "", "9h30m0s", CountBusiness, false},
		{"S/update#1", SLAMissed, "2026-03-23T15:00:00Z", "", "9h30m0s", CountBusiness, false},
		{"S/repair_return", SLANotReached, "", "", "0s", CountBusiness, false},
		{"NEW/initial_response", SLAPending, "2026-03-23T19:00:00Z", "", "1h0m0s", CountWall, true},
		{"CX/initial_response", SLANotReached, "2026-03-23T13:00:00Z", "", "1h0m0s", CountBusiness, true},
		{"NOTE/initial_response", SLAMet, "2026-03-23T13:00:00Z", "2026-03-23T11:00:00Z", "2h0m0s", CountBusiness, true},
	} {
		r, ok := got[tc.key]
		if !ok {
			t.Errorf("%s: no row", tc.key)
			continue
		}
		var due, done string
		if !r.Due.IsZero() {
			due = r.Due.Format(time.RFC3339)
		}
		if !r.Done.IsZero() {
			done = r.Done.Format(time.RFC3339)
		}
		if r.Status != tc.status || due != tc.due || done != tc.done || r.ElapsedText != tc.elapsed ||
			r.Counting != tc.counting || r.CreditEligible != tc.credit {
			t.Errorf("%s: %s due %q done %q elapsed %s (%s) credits %v\nwant %s due %q done %q elapsed %s (%s) credits %v",
				tc.key, r.Status, due, done, r.ElapsedText, r.Counting, r.CreditEligible,
				tc.status, tc.due, tc.done, tc.elapsed, tc.counting, tc.credit)
		}
	}
	if _, ok := got["PP/update#4"]; ok {
		t.Error("PP: an update target after the replacement shipped (the vendor's part is done)")
	}
	if r := got["PP/initial_response"]; r.ContractID != "C-1" || r.Region != "emea" || r.Serial != "SN-premium-plus" ||
		r.Severity != 2 || r.Tier != "premium-plus" || r.ElapsedSeconds != 19*3600 {
		t.Errorf("PP row lacks the claim evidence: %+v", r)
	}
	for k := range got {
		if strings.HasPrefix(k, "OP/") || strings.HasPrefix(k, "EXP/") || strings.HasPrefix(k, "GONE/") {
			t.Errorf("%s: a case the vendor does not take (or cannot be placed) is in the report", k)
		}
		if strings.HasSuffix(k, "/"+ClockRaiseSeverity) {
			t.Errorf("%s: raising the severity is the agent's rule, not a vendor target", k)
		}
	}
	if len(left) != 1 || left[0].CaseID != "GONE" || !strings.Contains(left[0].Reason, "no longer in the inventory") {
		t.Errorf("left out: %+v; want GONE with the reason", left)
	}
}

// TestClockInputOf: the first time of each state from the log, the
// vendor's events (vendor states and desk notes, not deliveries or the
// customer's own steps), and the last close of a case closed again.
func TestClockInputOf(t *testing.T) {
	t.Parallel()
	cl := reportCase(t, "A", "premium", "premium", 1, "2026-03-20T09:00:00Z", StateClosed,
		"confirmed=2026-03-20T10:00:00Z", "confirmed=2026-03-20T10:30:00Z", "replacement_shipped=2026-03-20T12:00:00Z",
		"replacement_installed=2026-03-21T09:00:00Z", "closed=2026-03-21T10:00:00Z", "closed=2026-03-22T10:00:00Z")
	cl.Events = append(cl.Events, Event{Type: EventDelivery, At: ts(t, "2026-03-20T09:01:00Z"), Actor: "desk:vendor"})
	pol := Policy{ReturnDays: 10, Desks: []Desk{{Name: "vendor", Role: config.RoleVendor}}}
	in := ClockInputOf(pol, cl.Case, cl.Events)
	if got := in.Reached[StateConfirmed]; !got.Equal(ts(t, "2026-03-20T10:00:00Z")) {
		t.Errorf("confirmed at %s, want the first confirm 10:00", got)
	}
	if got := in.Reached[StateClosed]; !got.Equal(ts(t, "2026-03-22T10:00:00Z")) {
		t.Errorf("closed at %s, want the last close", got)
	}
	if len(in.VendorEvents) != 3 || in.ReturnDays != 10 {
		t.Errorf("vendor events %v, return days %d; want the two confirms and the shipment, 10", in.VendorEvents, in.ReturnDays)
	}
	cl.Case.State = StateOpen // reopened
	if in := ClockInputOf(pol, cl.Case, cl.Events); !in.Reached[StateClosed].IsZero() {
		t.Errorf("a reopened case ends at %s; want no end", in.Reached[StateClosed])
	}
}
