package rma

import (
	"slices"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// Vendor clocks of a case (issue 10 section 3, support-model.md sections 1
// and 3): the keys of Case.Due for vendor targets and the label "clock" of
// hsm_case_due_timestamp_seconds and hsm_sla_breaches_total.
const (
	// ClockInitialResponse: the tier's response target from the opening
	// (4 h premium tiers, 8 h standard), met by the first vendor event.
	ClockInitialResponse = "initial_response"
	// ClockUpdate: the next vendor update is due (severity 1: every 2 h on
	// premium tiers, daily on standard; severity 2: daily), counted from
	// the last vendor event; recurs until the vendor's part is done.
	ClockUpdate = "update"
	// ClockReplacementShip: advance replacement ships before the end of the
	// next business day after the fault was confirmed (RMA cut-off applies).
	ClockReplacementShip = "replacement_ship"
	// ClockRepairReturn: return and repair ships the unit back within 15
	// business days of vendor_received.
	ClockRepairReturn = "repair_return"
	// ClockFaultyReturn: advance replacement: the faulty unit goes back
	// within rma.return_days calendar days of replacement_installed.
	ClockFaultyReturn = "faulty_return"
	// ClockEscalateSupportManager, ClockEscalateExecutive and
	// ClockEscalateDirector are the escalation ladder of section 3.
	ClockEscalateSupportManager = "escalate_support_manager"
	ClockEscalateExecutive      = "escalate_executive"
	ClockEscalateDirector       = "escalate_director"
	// ClockEscalateUnresolved: any case open 3 days without resolution.
	ClockEscalateUnresolved = "escalate_unresolved"
	// ClockRaiseSeverity: severity 3 unresolved after 30 days is raised to 2.
	ClockRaiseSeverity = "raise_severity"
)

// RepairBusinessDays is the return-and-repair turnaround (section 1).
const RepairBusinessDays = 15

// ClockInput is what a case's vendor clocks depend on.
type ClockInput struct {
	Tier     string // config.Tier*; "" (no contract) has no vendor clocks
	Severity int
	Flow     Flow
	OpenedAt time.Time
	// Reached holds when the case first entered each state it reached
	// (from its event log); closed or cancelled ends every clock.
	Reached map[State]time.Time
	// VendorEvents are the times of the vendor's progress: flow events
	// and notes from a vendor desk, in any order.
	VendorEvents []time.Time
	// ReturnDays is rma.return_days (0 means config.DefaultReturnDays).
	ReturnDays int
}

// Target is one vendor clock of a case: when it is due and when its event
// happened.
type Target struct {
	Clock string    `json:"clock"`
	Due   time.Time `json:"due"`
	// Done is when the awaited event happened (zero: not yet).
	Done time.Time `json:"done,omitzero"`
	// Stopped is when the case was closed or cancelled with the target
	// not done (zero otherwise).
	Stopped time.Time `json:"stopped,omitzero"`
}

// Pending reports whether the target still waits for its event.
func (t Target) Pending() bool { return t.Done.IsZero() && t.Stopped.IsZero() }

// Missed reports whether the target was (or, still pending at now, is)
// past due.
func (t Target) Missed(now time.Time) bool {
	switch {
	case !t.Done.IsZero():
		return t.Done.After(t.Due)
	case !t.Stopped.IsZero():
		return t.Stopped.After(t.Due)
	}
	return now.After(t.Due)
}

// TierClock is the clock a tier counts response, update and escalation
// targets in: wall time for premium-plus (24/7), the region's business time
// otherwise (support-model.md section 3).
func TierClock(tier string, cal *calendar.Calendar) calendar.Clock {
	if tier == config.TierPremiumPlus {
		return calendar.Wall{}
	}
	return cal
}

// resolvedState is where the vendor's part of a flow is done: escalation
// and update clocks stop there.
func resolvedState(f Flow) State {
	switch f {
	case FlowAdvanceReplacement:
		return StateReplacementShipped
	case FlowReturnAndRepair:
		return StateRepairedShipped
	}
	return StateClosed
}

// Targets returns every vendor clock of a case, in a fixed order, with its
// due time in the case region's calendar cal. Pure: the same input gives
// the same targets.
func Targets(in ClockInput, cal *calendar.Calendar) []Target {
	if in.Tier == "" || cal == nil {
		return nil
	}
	clk := TierClock(in.Tier, cal)
	premium := in.Tier == config.TierPremiumPlus || in.Tier == config.TierPremium
	resolved := in.Reached[resolvedState(in.Flow)]
	end := firstOf(in.Reached[StateClosed], in.Reached[StateCancelled])
	var out []Target
	add := func(clock string, due, done time.Time) {
		t := Target{Clock: clock, Due: due, Done: done}
		if t.Done.IsZero() {
			t.Stopped = end
		}
		out = append(out, t)
	}

	respond := 8 * time.Hour
	if premium {
		respond = 4 * time.Hour
	}
	add(ClockInitialResponse, clk.Add(in.OpenedAt, respond), firstOf(in.VendorEvents...))
	if due, ok := updateDue(in, clk, premium); ok && resolved.IsZero() {
		add(ClockUpdate, due, time.Time{})
	}
	if at, ok := in.Reached[StateConfirmed]; ok && in.Flow == FlowAdvanceReplacement {
		add(ClockReplacementShip, cal.EndOfNextBusinessDay(at), in.Reached[StateReplacementShipped])
	}
	if at, ok := in.Reached[StateVendorReceived]; ok && in.Flow == FlowReturnAndRepair {
		add(ClockRepairReturn, cal.AddBusinessDays(at, RepairBusinessDays), in.Reached[StateRepairedShipped])
	}
	if at, ok := in.Reached[StateReplacementInstalled]; ok && in.Flow == FlowAdvanceReplacement {
		days := in.ReturnDays
		if days <= 0 {
			days = config.DefaultReturnDays
		}
		add(ClockFaultyReturn, cal.AddCalendarDays(at, days), in.Reached[StateFaultyReturned])
	}
	for _, e := range escalations(in, clk, premium) {
		add(e.clock, e.due, resolved)
	}
	if in.Severity == SeverityNormal {
		add(ClockRaiseSeverity, cal.AddCalendarDays(in.OpenedAt, 30), resolved)
	}
	return out
}

// DueDates returns the due times of a case's pending vendor clocks by clock
// name (Case.Due, `cases show --json`, the API and
// hsm_case_due_timestamp_seconds); empty for a closed or cancelled case.
func DueDates(in ClockInput, cal *calendar.Calendar) map[string]time.Time {
	out := map[string]time.Time{}
	for _, t := range Targets(in, cal) {
		if t.Pending() {
			out[t.Clock] = t.Due
		}
	}
	return out
}

// updateDue is the next vendor update: from the last vendor event (or the
// opening), every 2 h for severity 1 on premium tiers, daily for severity 1
// on standard and for severity 2; none for 3 and 4 ("as agreed").
func updateDue(in ClockInput, clk calendar.Clock, premium bool) (time.Time, bool) {
	from := in.OpenedAt
	if len(in.VendorEvents) > 0 {
		from = slices.MaxFunc(in.VendorEvents, time.Time.Compare)
	}
	switch {
	case in.Severity == SeverityUrgent && premium:
		return clk.Add(from, 2*time.Hour), true
	case in.Severity == SeverityUrgent, in.Severity == SeverityHigh:
		return clk.AddDays(from, 1), true
	}
	return time.Time{}, false
}

type escalation struct {
	clock string
	due   time.Time
}

// escalations is the ladder of section 3, counted from the opening:
// severity 1 to the support manager after 2 h (premium tiers) or 24 h
// (standard), to executive level after 8 h (premium-plus), to director
// level after 24 h; severity 2 to the support manager after 72 h; severity
// 3 after a week on premium tiers; any case after 3 days unresolved.
func escalations(in ClockInput, clk calendar.Clock, premium bool) []escalation {
	at := func(d time.Duration) time.Time { return clk.Add(in.OpenedAt, d) }
	var out []escalation
	switch in.Severity {
	case SeverityUrgent:
		manager := 24 * time.Hour
		if premium {
			manager = 2 * time.Hour
		}
		out = append(out, escalation{ClockEscalateSupportManager, at(manager)})
		if in.Tier == config.TierPremiumPlus {
			out = append(out, escalation{ClockEscalateExecutive, at(8 * time.Hour)})
		}
		out = append(out, escalation{ClockEscalateDirector, at(24 * time.Hour)})
	case SeverityHigh:
		out = append(out, escalation{ClockEscalateSupportManager, at(72 * time.Hour)})
	case SeverityNormal:
		if premium {
			week := 5 // business days in a week of business time
			if _, wall := clk.(calendar.Wall); wall {
				week = 7
			}
			out = append(out, escalation{ClockEscalateSupportManager, clk.AddDays(in.OpenedAt, week)})
		}
	}
	return append(out, escalation{ClockEscalateUnresolved, clk.AddDays(in.OpenedAt, 3)})
}

// firstOf returns the earliest non-zero time, or zero.
func firstOf(ts ...time.Time) time.Time {
	var first time.Time
	for _, t := range ts {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first
}
