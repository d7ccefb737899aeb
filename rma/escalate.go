package rma

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// Events of the SLA clocks (issue 10 section 4). Each carries Data
// {"clock": NAME} and is the case's record that the clock was acted on, so
// a restart neither counts nor sends it again.
const (
	// EventBreached records a vendor target missed (to internal desks).
	EventBreached = "case.breached"
	// EventEscalated goes to the case's desks when an escalation point of
	// section 3 passed: Data "level" is the level reached.
	EventEscalated = "case.escalated"
	// EventReminder goes to the vendor desks that have the case when the
	// vendor has not updated it within its update frequency.
	EventReminder = "case.reminder"
)

// Escalation levels of support-model.md section 3 (Data "level" of
// case.escalated).
const (
	LevelSupportManager = "support_manager"
	LevelExecutive      = "executive"
	LevelDirector       = "director"
)

// escalationLevel is the level each escalation clock reaches; "any case
// open 3 days" reaches the first rung, the support manager.
var escalationLevel = map[string]string{
	ClockEscalateSupportManager: LevelSupportManager,
	ClockEscalateExecutive:      LevelExecutive,
	ClockEscalateDirector:       LevelDirector,
	ClockEscalateUnresolved:     LevelSupportManager,
}

// escalate acts once on every vendor clock of c that passed with its event
// not done: it records the breach (hsm_sla_breaches_total), escalates to
// the level reached (once per level), reminds the vendor at the update
// frequency and raises severity 3 to 2 after 30 days. acted reports
// whether it wrote anything.
func (e *Engine) escalate(ctx context.Context, pol Policy, c Case, l caseLog, cal *calendar.Calendar) (acted bool, err error) {
	if cal == nil || l.in.Tier == "" {
		return false, nil
	}
	have, _, err := deskSet(ctx, e.st, c.ID)
	if err != nil {
		return false, err
	}
	now := e.now()
	for _, t := range Targets(l.in, cal) {
		if !t.Pending() || !t.Missed(now) {
			continue
		}
		var did bool
		switch level := escalationLevel[t.Clock]; {
		case t.Clock == ClockUpdate:
			did, err = e.remind(ctx, pol, c, l, cal, have, now)
		case l.records[t.Clock]:
		case t.Clock == ClockRaiseSeverity:
			did, err = e.raise(ctx, pol, c, t, have, now)
		case level != "" && !l.levels[level]:
			note := fmt.Sprintf("escalated to the vendor's %s: %s passed at %s and the case is not resolved",
				levelName(level), t.Clock, t.Due.UTC().Format(time.RFC3339))
			did, err = e.slaEvent(ctx, c, EventEscalated, targets(pol, c, EventEscalated, have), note,
				map[string]any{"clock": t.Clock, "level": level, "due": t.Due}, nil, now)
			l.levels[level] = did
		default: // a missed target, or a level already reached
			note := fmt.Sprintf("vendor target %s missed: due %s", t.Clock, t.Due.UTC().Format(time.RFC3339))
			did, err = e.slaEvent(ctx, c, EventBreached, pol.desksWithRole(config.RoleInternal), note,
				map[string]any{"clock": t.Clock, "due": t.Due}, nil, now)
		}
		if err != nil {
			return acted, err
		}
		if did && t.Clock != ClockRaiseSeverity && (t.Clock != ClockUpdate || !l.records[t.Clock]) {
			e.m.breaches.WithLabelValues(t.Clock, c.Tier).Inc()
		}
		l.records[t.Clock] = l.records[t.Clock] || did
		acted = acted || did
	}
	return acted, nil
}

// levelName is a level as the case log and the desks read it.
func levelName(level string) string {
	switch level {
	case LevelSupportManager:
		return "support manager"
	case LevelExecutive:
		return "executive level"
	}
	return "director level"
}

// remind sends a case.reminder to the vendor desks that have the case when
// the vendor has not updated it within its update frequency since its
// last update or the last reminder.
func (e *Engine) remind(ctx context.Context, pol Policy, c Case, l caseLog, cal *calendar.Calendar, have map[string]bool, now time.Time) (bool, error) {
	in := l.in
	in.VendorEvents = append(append([]time.Time(nil), l.in.VendorEvents...), l.reminders...)
	premium := in.Tier == config.TierPremiumPlus || in.Tier == config.TierPremium
	next, ok := updateDue(in, TierClock(in.Tier, cal), premium)
	if !ok || !now.After(next) {
		return false, nil
	}
	var vendors []Desk
	for _, d := range pol.desksWithRole(config.RoleVendor) {
		if have[d.Name] {
			vendors = append(vendors, d)
		}
	}
	note := fmt.Sprintf("reminder: no vendor update since %s (an update was due %s)",
		orNever(lastOf(l.in.VendorEvents)), next.UTC().Format(time.RFC3339))
	return e.slaEvent(ctx, c, EventReminder, vendors, note, map[string]any{"clock": ClockUpdate, "due": next}, nil, now)
}

// raise raises a severity-3 case unresolved after 30 days to severity 2,
// once (support-model.md section 3).
func (e *Engine) raise(ctx context.Context, pol Policy, c Case, t Target, have map[string]bool, now time.Time) (bool, error) {
	note := fmt.Sprintf("severity raised from 3 to 2: unresolved 30 days after opening (%s)", t.Due.UTC().Format(time.RFC3339))
	raised := c
	raised.Severity = SeverityHigh
	return e.slaEvent(ctx, c, EventUpdated, targets(pol, raised, EventUpdated, have), note,
		map[string]any{"clock": t.Clock, "severity": SeverityHigh, "previous_severity": SeverityNormal},
		func(c *Case) error {
			if c.Severity != SeverityNormal {
				return ErrNoChange
			}
			c.Severity = SeverityHigh
			c.Impact += "; raised to 2: unresolved after 30 days"
			return nil
		}, now)
}

// slaEvent writes one SLA event on an open case with its outbox rows for
// desks, after mutate (nil: none) changed the case. did is false when the
// case ended meanwhile or mutate had nothing to do.
func (e *Engine) slaEvent(ctx context.Context, c Case, evType string, desks []Desk, note string, data map[string]any,
	mutate func(*Case) error, now time.Time) (did bool, err error) {
	_, err = e.st.Transition(ctx, c.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		if mutate != nil {
			if err := mutate(c); err != nil {
				return Event{}, nil, err
			}
		}
		rows, err := outbox(desks, after(*c, now), evType, nil, "", now)
		return Event{Type: evType, At: now, Actor: ActorAgent, Note: note, Data: eventData(data)}, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", evType, err)
	}
	e.logger.Info("SLA clock acted on", "case", c.ID, "event", evType, "clock", data["clock"], "desks", len(desks))
	e.committed(ctx, evType)
	return true, nil
}

// orNever formats a time, or "the opening" when zero.
func orNever(t time.Time) string {
	if t.IsZero() {
		return "the opening"
	}
	return t.UTC().Format(time.RFC3339)
}
