package rma

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// EventDue records that a case's vendor due dates changed (a flow step, a
// vendor update or a new severity moved them); log only, no desk gets it.
const EventDue = "case.due"

// vendorClocks are the Case.Due keys the SLA tick owns (clocks.go); the
// other keys (DueResponse, DuePage, DueBundle) belong to routing, paging
// and bundles.
var vendorClocks = []string{ClockInitialResponse, ClockUpdate, ClockReplacementShip, ClockRepairReturn, ClockFaultyReturn,
	ClockEscalateSupportManager, ClockEscalateExecutive, ClockEscalateDirector, ClockEscalateUnresolved, ClockRaiseSeverity}

// vendorStates are the flow states the vendor's own progress reaches: they
// meet the initial response and restart the update clock. The others are
// the customer's (installing, shipping the faulty unit) or an end.
var vendorStates = map[State]bool{StateAcknowledged: true, StateConfirmed: true, StateAuthorized: true,
	StateReplacementShipped: true, StateVendorReceived: true, StateRepairedShipped: true}

// caseLog is what the SLA tick reads from a case's event log since its
// last (re)opening.
type caseLog struct {
	in ClockInput
	// records are the clocks already acted on (breach recorded, escalated,
	// reminded, severity raised), each once per case; levels the
	// escalation levels reached.
	records map[string]bool
	levels  map[string]bool
	// reminders are the times of the reminders sent.
	reminders []time.Time
}

// recordData is the Data of the events escalate.go writes: which clock
// and, for case.escalated, the level.
type recordData struct {
	Clock string `json:"clock"`
	Level string `json:"level"`
}

// readLog builds a case's clock input and SLA records from its events. A
// case without a vendor (operational, contract, expired, no vendor desk)
// has no vendor clocks: its input has no tier.
func readLog(pol Policy, c Case, evs []Event) caseLog {
	l := caseLog{in: ClockInputOf(pol, c, evs), records: map[string]bool{}, levels: map[string]bool{}}
	if !vendorTakes(c) {
		l.in.Tier = ""
	}
	for _, ev := range sinceOpened(evs) {
		var d recordData
		if len(ev.Data) == 0 || json.Unmarshal(ev.Data, &d) != nil || d.Clock == "" {
			continue
		}
		switch ev.Type {
		case EventBreached, EventEscalated, EventReminder, EventUpdated:
			l.records[d.Clock] = true
		}
		if ev.Type == EventEscalated && d.Level != "" {
			l.levels[d.Level] = true
		}
		if ev.Type == EventReminder {
			l.reminders = append(l.reminders, ev.At)
		}
	}
	return l
}

// sinceOpened returns the events since the case's last (re)opening: a
// reopened case starts its clocks and records afresh.
func sinceOpened(evs []Event) []Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == EventReopened {
			return evs[i:]
		}
	}
	return evs
}

// ClockInputOf builds the clock input of a case from its event log since
// its last (re)opening, the one reading the SLA tick and the SLA report
// share: when it first reached each state of its flow (events of type
// StateEvent(state), at Event.At; the last close or cancel), and the
// vendor's events (moves into a vendor state, and any event a vendor
// desk logged). A terminal case without its closing event ends at ClosedAt.
func ClockInputOf(pol Policy, c Case, evs []Event) ClockInput {
	in := ClockInput{Tier: c.Tier, Severity: c.Severity, Flow: c.Flow, OpenedAt: c.OpenedAt,
		Reached: map[State]time.Time{}, ReturnDays: pol.ReturnDays}
	states := map[string]State{StateEvent(StateClosed): StateClosed, StateEvent(StateCancelled): StateCancelled}
	for _, s := range FlowStates(c.Flow) {
		states[StateEvent(s)] = s
	}
	vendorDesks := map[string]bool{}
	for _, d := range pol.desksWithRole(config.RoleVendor) {
		vendorDesks["desk:"+d.Name] = true
	}
	evs = sinceOpened(evs)
	if len(evs) > 0 && evs[0].Type == EventReopened {
		in.OpenedAt = evs[0].At
	}
	for _, ev := range evs {
		if ev.Seq == 0 || ev.Type == EventDelivery {
			continue
		}
		if s, ok := states[ev.Type]; ok && s != StateOpen {
			if _, seen := in.Reached[s]; !seen || s.Terminal() {
				in.Reached[s] = ev.At // the first time; the last close counts
			}
			if vendorStates[s] {
				in.VendorEvents = append(in.VendorEvents, ev.At)
			}
		} else if vendorDesks[ev.Actor] {
			in.VendorEvents = append(in.VendorEvents, ev.At)
		}
	}
	switch {
	case !c.State.Terminal(): // open again: an earlier end ends nothing
		delete(in.Reached, StateClosed)
		delete(in.Reached, StateCancelled)
	case in.Reached[StateClosed].IsZero() && in.Reached[StateCancelled].IsZero() && !c.ClosedAt.IsZero():
		in.Reached[c.State] = c.ClosedAt
	}
	return in
}

// caseCalendar is the business calendar of a case's device: its contract
// region's; nil when the device has none.
func caseCalendar(pol Policy, c Case) *calendar.Calendar {
	return pol.calendar(pol.device(c.Device, c.Serial).Contract.Region)
}

// withDue returns the case's Due with the vendor clocks replaced by dates,
// and whether that changes anything.
func withDue(due map[string]time.Time, dates map[string]time.Time) (map[string]time.Time, bool) {
	out := maps.Clone(due)
	if out == nil {
		out = map[string]time.Time{}
	}
	for _, k := range vendorClocks {
		delete(out, k)
	}
	maps.Copy(out, dates)
	return out, !maps.EqualFunc(out, due, time.Time.Equal)
}

// checkSLA is the periodic SLA tick: for every open case it acts on the
// clocks that passed (escalate.go) and writes the vendor due dates when
// they changed. It writes nothing when nothing is due or changed.
func (e *Engine) checkSLA(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("SLA clocks: list the open cases", "err", err)
		return
	}
	pol := *e.pol.Load()
	for _, c := range cases {
		if c.State.Terminal() {
			continue
		}
		if err := e.slaCase(ctx, pol, c); err != nil {
			e.logger.Error("SLA clocks", "case", c.ID, "err", err)
		}
	}
	e.refresh(ctx)
}

// slaCase runs the SLA tick for one case.
func (e *Engine) slaCase(ctx context.Context, pol Policy, c Case) error {
	cal := caseCalendar(pol, c)
	evs, err := e.st.Events(ctx, c.ID)
	if err != nil {
		return err
	}
	l := readLog(pol, c, evs)
	if acted, err := e.escalate(ctx, pol, c, l, cal); err != nil || acted {
		return err // the next tick recomputes from the new log
	}
	return e.syncDue(ctx, c.ID, DueDates(l.in, cal))
}

// syncDue writes a case's vendor due dates in a case.due event when they
// differ from the stored ones.
func (e *Engine) syncDue(ctx context.Context, id string, dates map[string]time.Time) error {
	now := e.now()
	_, err := e.st.Transition(ctx, id, func(c *Case) (Event, []Delivery, error) {
		due, changed := withDue(c.Due, dates)
		if !changed || c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		c.Due = due
		return Event{Type: EventDue, At: now, Actor: ActorAgent, Note: dueNote(dates), Data: eventData(map[string]any{"due": dates})}, nil, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err == nil {
		e.m.events.WithLabelValues(EventDue).Inc()
	}
	return err
}

// dueNote lists due dates for the case log, in clock order.
func dueNote(dates map[string]time.Time) string {
	if len(dates) == 0 {
		return "no vendor clock is running"
	}
	var parts []string
	for _, k := range vendorClocks {
		if t, ok := dates[k]; ok {
			parts = append(parts, k+" "+t.UTC().Format(time.RFC3339))
		}
	}
	return "due: " + strings.Join(parts, ", ")
}

// lastOf returns the latest time of ts, or zero.
func lastOf(ts []time.Time) time.Time {
	if len(ts) == 0 {
		return time.Time{}
	}
	return slices.MaxFunc(ts, time.Time.Compare)
}
