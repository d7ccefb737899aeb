package rma

// The SLA report (issue 10 section 6, support-model.md sections 3 and 7):
// every vendor target of every case, due against done, met or missed, the
// time counted, and whether the tier carries service credits: the evidence
// a customer needs to claim credits. SLAReport is pure; `hsm-agent report
// sla` and GET /api/v1/reports/sla both call it through agent.SLAReport, so
// they never disagree.

import (
	"fmt"
	"slices"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// Statuses of an SLA report row.
const (
	// SLAMet: the awaited event happened by the due time.
	SLAMet = "met"
	// SLAMissed: the event happened after the due time, or had not
	// happened when the due time passed.
	SLAMissed = "missed"
	// SLAPending: the case is open, the event has not happened and the due
	// time is still ahead.
	SLAPending = "pending"
	// SLANotReached: the due time never came: the case ended before it
	// without the event, or never reached the state that starts the clock
	// (no due time).
	SLANotReached = "not_reached"
)

// Ways an SLA row's elapsed time is counted (TierClock).
const (
	CountWall     = "wall"
	CountBusiness = "business"
)

// SLARow is one vendor target of one case with the evidence a credit claim
// needs. Times are UTC.
type SLARow struct {
	CaseID     string `json:"case_id"`
	Device     string `json:"device"`
	Serial     string `json:"serial"`
	Tier       string `json:"tier"`
	ContractID string `json:"contract_id"`
	Region     string `json:"region"`
	Severity   int    `json:"severity"`
	State      State  `json:"state"`
	Clock      string `json:"clock"`
	// Start is when the clock started (zero: not started).
	Start time.Time `json:"start,omitzero"`
	// Due is when the target is due (zero: the clock has not started).
	Due time.Time `json:"due,omitzero"`
	// Done is when the awaited event happened (zero: not yet).
	Done   time.Time `json:"done,omitzero"`
	Status string    `json:"status"`
	// Counting is how Elapsed is counted: wall (premium-plus) or business
	// (the region's office hours).
	Counting string `json:"counting"`
	// Elapsed is the counted time from Start to Done, to the case's end,
	// or to the report's now while pending.
	Elapsed        time.Duration `json:"-"`
	ElapsedText    string        `json:"elapsed"`
	ElapsedSeconds int64         `json:"elapsed_seconds"`
	// CreditEligible: the tier carries service credits for missed targets.
	CreditEligible bool `json:"credit_eligible"`
}

// CaseLog is one case with its event log, the input of SLAReport.
type CaseLog struct {
	Case   Case
	Events []Event
}

// ReportInput is what the SLA report is built from.
type ReportInput struct {
	Cases []CaseLog
	// Policy gives the inventory (the contract ID and region of each
	// case's device), the vendor desks, the calendars by region and
	// rma.return_days: what the SLA tick reads too (PolicyFrom).
	Policy Policy
	// Now ends the elapsed time of pending targets and decides whether
	// they are missed yet.
	Now time.Time
}

// LeftOut is a case the report cannot cover, and why.
type LeftOut struct {
	CaseID string `json:"case_id"`
	Reason string `json:"reason"`
}

// CreditEligible reports whether a contract tier carries service credits
// for missed targets: premium-plus and premium do, standard has targets
// but no credits (support-model.md section 7).
func CreditEligible(tier string) bool {
	return tier == config.TierPremiumPlus || tier == config.TierPremium
}

// NewCalendars builds the business calendar of every region from
// calendars.<region> (regions left out take the defaults of
// support-model.md section 1).
func NewCalendars(specs map[string]config.Calendar) (map[string]*calendar.Calendar, error) {
	out := make(map[string]*calendar.Calendar, len(calendar.Regions()))
	for _, region := range calendar.Regions() {
		cal, err := calendar.New(region, specs[region].Spec())
		if err != nil {
			return nil, fmt.Errorf("calendars.%s: %w", region, err)
		}
		out[region] = cal
	}
	return out, nil
}

// SLAReport returns a row for every vendor target of every case the vendor
// takes (a hardware or firmware case of a device with an active contract),
// cases in the order given, targets in the order of Targets. Cases it
// cannot cover (no inventory device, no calendar for the region) are
// listed in left. Pure: the same input gives the same rows.
func SLAReport(in ReportInput) (rows []SLARow, left []LeftOut) {
	pol := in.Policy
	for _, cl := range in.Cases {
		c := cl.Case
		if !vendorTakes(c) || c.Tier == "" {
			continue
		}
		dev := pol.device(c.Device, c.Serial)
		if dev.Name == "" {
			left = append(left, LeftOut{c.ID, fmt.Sprintf("device %s (serial %s) is no longer in the inventory, so its contract and region are unknown", c.Device, c.Serial)})
			continue
		}
		cal := pol.calendar(dev.Contract.Region)
		if cal == nil {
			left = append(left, LeftOut{c.ID, fmt.Sprintf("device %s has no calendar for region %q (devices.contract.region)", dev.Name, dev.Contract.Region)})
			continue
		}
		rows = append(rows, caseRows(c, cl.Events, dev, cal, in)...)
	}
	return rows, left
}

// caseRows is the report of one case.
func caseRows(c Case, events []Event, dev config.Device, cal *calendar.Calendar, in ReportInput) []SLARow {
	ci := ClockInputOf(in.Policy, c, events)
	clk := TierClock(c.Tier, cal)
	counting := CountBusiness
	if _, wall := clk.(calendar.Wall); wall {
		counting = CountWall
	}
	end := firstOf(ci.Reached[StateClosed], ci.Reached[StateCancelled])
	base := SLARow{CaseID: c.ID, Device: c.Device, Serial: c.Serial, Tier: c.Tier, ContractID: dev.Contract.ID,
		Region: dev.Contract.Region, Severity: c.Severity, State: c.State, Counting: counting,
		CreditEligible: CreditEligible(c.Tier)}
	row := func(t Target, start time.Time) SLARow {
		r := base
		r.Clock, r.Start, r.Due, r.Done = t.Clock, start.UTC(), t.Due.UTC(), t.Done.UTC()
		r.Status = slaStatus(t, in.Now)
		stop := firstOf(t.Done, t.Stopped)
		if stop.IsZero() {
			stop = in.Now
		}
		r.Elapsed = clk.Elapsed(start, stop)
		r.ElapsedText, r.ElapsedSeconds = r.Elapsed.Round(time.Second).String(), int64(r.Elapsed/time.Second)
		return r
	}
	var out []SLARow
	seen := map[string]bool{}
	for _, t := range Targets(ci, cal) {
		seen[t.Clock] = true
		switch t.Clock {
		case ClockRaiseSeverity: // the agent's own rule, not a vendor target
		case ClockUpdate: // only the pending one: updateHistory has them all
		default:
			out = append(out, row(t, clockStart(t.Clock, ci)))
		}
		if t.Clock == ClockInitialResponse {
			for _, u := range updateHistory(ci, clk, end) {
				out = append(out, row(u.Target, u.start))
			}
		}
	}
	for _, clock := range flowClocks(c.Flow) {
		if !seen[clock] {
			r := base
			r.Clock, r.Status, r.ElapsedText = clock, SLANotReached, time.Duration(0).String()
			out = append(out, r)
		}
	}
	return out
}

// slaStatus is met, missed, pending or not_reached for a target at now.
func slaStatus(t Target, now time.Time) string {
	switch {
	case t.Missed(now):
		return SLAMissed
	case !t.Done.IsZero():
		return SLAMet
	case !t.Stopped.IsZero():
		return SLANotReached
	}
	return SLAPending
}

// flowClocks are the clocks a flow's states start (listed not_reached
// while the case has not reached their state).
func flowClocks(f Flow) []string {
	switch f {
	case FlowAdvanceReplacement:
		return []string{ClockReplacementShip, ClockFaultyReturn}
	case FlowReturnAndRepair:
		return []string{ClockRepairReturn}
	}
	return nil
}

// clockStart is when a target's clock started: the state that starts it,
// or the opening.
func clockStart(clock string, in ClockInput) time.Time {
	switch clock {
	case ClockReplacementShip:
		return in.Reached[StateConfirmed]
	case ClockRepairReturn:
		return in.Reached[StateVendorReceived]
	case ClockFaultyReturn:
		return in.Reached[StateReplacementInstalled]
	}
	return in.OpenedAt
}

// updateTarget is one vendor update target with the time its clock
// started.
type updateTarget struct {
	Target
	start time.Time
}

// updateHistory is every update target of a case, not only the pending
// one: from the opening and from each vendor event, the next vendor event
// is due within the update frequency (updateDue), until the vendor's part
// is done. A gap between two vendor events longer than the frequency is a
// missed update.
func updateHistory(in ClockInput, clk calendar.Clock, end time.Time) []updateTarget {
	premium := CreditEligible(in.Tier) // the premium tiers
	resolved := in.Reached[resolvedState(in.Flow)]
	vendor := slices.SortedFunc(slices.Values(in.VendorEvents), time.Time.Compare)
	var out []updateTarget
	for k := 0; k <= len(vendor); k++ {
		from := in.OpenedAt
		if k > 0 {
			from = vendor[k-1]
		}
		if !resolved.IsZero() && !from.Before(resolved) {
			break
		}
		step := in
		step.VendorEvents = vendor[:k]
		due, ok := updateDue(step, clk, premium)
		if !ok {
			break
		}
		t := Target{Clock: ClockUpdate, Due: due}
		if k < len(vendor) {
			t.Done = vendor[k]
		} else {
			t.Stopped = end
		}
		out = append(out, updateTarget{t, from})
	}
	return out
}
