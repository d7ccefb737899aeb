package rma

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// record turns a confirmed fault into a case event: append to the open
// case of its key, reopen the key's case closed within reopen_window, or
// open a new case. confirmation is false for contract updates (no new
// occurrence).
func (e *Engine) record(ctx context.Context, pol Policy, f Fault, inv config.Device, sev int, impact string, flapping, confirmation bool) error {
	key := f.DedupKey()
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	now := e.now()
	switch {
	case found && !prev.State.Terminal():
		return e.recur(ctx, pol, prev, f, sev, impact, flapping, confirmation)
	case found && prev.State == StateClosed && now.Sub(prev.ClosedAt) <= pol.ReopenWindow:
		return e.reopen(ctx, pol, prev, f, inv, sev, impact)
	}
	return e.open(ctx, pol, f, inv, sev, impact)
}

// open opens a new case with its bundle, its outbox rows and, for
// severity 1 without a vendor, its page.
func (e *Engine) open(ctx context.Context, pol Policy, f Fault, inv config.Device, sev int, impact string) error {
	now := e.now()
	c := Case{ID: NewCaseID(), DedupKey: f.DedupKey(), Serial: f.Serial, Device: f.Device, Fault: f.Class, Kind: f.Kind,
		Severity: sev, Impact: impact, Tier: inv.Contract.Tier, State: StateOpen, Environment: inv.Environment, Pool: inv.Pool,
		Summary: f.Summary, Description: f.Description, OpenedAt: now, UpdatedAt: now, Occurrences: 1, Seq: 1,
		ContractID: inv.Contract.ID}
	tok := deviceToken(e.lastPoll, f.Device)
	c.Model, c.Firmware = strings.TrimSpace(tok.Model), strings.TrimSpace(tok.Firmware)
	applyPolicy(pol, &c, inv, now, e.opts.PageFallback)
	bundle, note, data := e.bundle(ctx, c)
	if note != "" {
		c.Due[DueBundle] = now.Add(e.opts.BundleRetryInterval)
	}
	data["severity"], data["impact"] = c.Severity, c.Impact
	e.noteFleetFirmware(data, c.Device)
	rows, err := outboxNoting(targets(pol, c, EventOpened, nil), c, EventOpened, nil, bundle, note, now)
	if err != nil {
		return err
	}
	ev := Event{Type: EventOpened, At: now, Actor: ActorAgent, Note: c.Summary, Data: eventData(data)}
	created, err := e.st.OpenCase(ctx, c, ev, rows)
	if err != nil {
		// Another process may have opened the key's case meanwhile: append.
		if prev, found, lerr := e.st.CaseByKey(ctx, c.DedupKey); lerr == nil && found && !prev.State.Terminal() {
			return e.recur(ctx, pol, prev, f, sev, impact, false, true)
		}
		return fmt.Errorf("open a case for %s: %w", c.DedupKey, err)
	}
	e.logger.Info("case opened", "case", created.ID, "device", created.Device, "fault", created.DedupKey,
		"severity", created.Severity, "desks", len(rows), "reason", created.Reason)
	e.committed(ctx, EventOpened)
	e.pageIfDue(ctx, pol, created)
	return nil
}

// bundle builds the case's diagnostics bundle; a failure is logged and
// noted on the event, never fatal: note is then what the desks are told
// (BundleNote), and the bundle follows later (DueBundle).
func (e *Engine) bundle(ctx context.Context, c Case) (path, note string, data map[string]any) {
	data = map[string]any{}
	if e.opts.Bundle == nil {
		return "", "", data
	}
	path, err := e.opts.Bundle(ctx, c)
	if err != nil {
		e.logger.Error("build the diagnostics bundle; the case goes out without it and the bundle follows when it can be written",
			"case", c.ID, "device", c.Device, "err", err)
		data["bundle_error"] = err.Error()
		return "", bundleNote(err), data
	}
	data["bundle"] = path
	return path, "", data
}

// reopen reopens the key's case closed within reopen_window, with a new
// bundle.
func (e *Engine) reopen(ctx context.Context, pol Policy, prev Case, f Fault, inv config.Device, sev int, impact string) error {
	now := e.now()
	next := prev
	next.State, next.ClosedAt, next.Severity = StateOpen, time.Time{}, sev
	bundle, note, data := e.bundle(ctx, next)
	data["severity"], data["impact"], data["closed_at"] = sev, impact, prev.ClosedAt
	e.noteFleetFirmware(data, prev.Device)
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State != StateClosed {
			return Event{}, nil, ErrNoChange
		}
		c.State, c.ClosedAt, c.ClearedAt = StateOpen, time.Time{}, time.Time{}
		c.Severity, c.Impact, c.Summary, c.Description = sev, impact, f.Summary, f.Description
		c.Tier, c.Environment, c.Pool = inv.Contract.Tier, inv.Environment, inv.Pool
		c.Occurrences++
		c.Held, c.BundleApproved = false, false
		applyPolicy(pol, c, inv, now, e.opts.PageFallback)
		delete(c.Due, DueBundle)
		if note != "" {
			c.Due[DueBundle] = now.Add(e.opts.BundleRetryInterval)
		}
		rows, err := outboxNoting(targets(pol, *c, EventReopened, nil), after(*c, now), EventReopened, nil, bundle, note, now)
		ev := Event{Type: EventReopened, At: now, Actor: ActorAgent, Note: f.Summary, Data: eventData(data)}
		return ev, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return nil // changed meanwhile (e.g. reopened by another process)
	}
	if err != nil {
		return fmt.Errorf("reopen case %s: %w", prev.ID, err)
	}
	e.logger.Info("case reopened", "case", c.ID, "device", c.Device, "fault", c.DedupKey, "severity", c.Severity)
	e.committed(ctx, EventReopened)
	e.pageIfDue(ctx, pol, c)
	return nil
}

// recur appends a recurrence (or, for contracts, a change of threshold) to
// an open case: case.updated to the desks that have the case, or a single
// case.held when it starts flapping; nothing to desks while held.
func (e *Engine) recur(ctx context.Context, pol Policy, prev Case, f Fault, sev int, impact string, flapping, confirmation bool) error {
	have, _, err := deskSet(ctx, e.st, prev.ID)
	if err != nil {
		return err
	}
	now := e.now()
	var evType string
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		old := c.Severity
		if c.Due == nil {
			c.Due = map[string]time.Time{}
		}
		if confirmation {
			c.Occurrences++
			c.ClearedAt = time.Time{} // the fault is back: health starts over
		}
		c.Severity, c.Impact, c.Summary, c.Description = sev, impact, f.Summary, f.Description
		data := map[string]any{"severity": sev, "impact": impact, "occurrences": c.Occurrences}
		if old != sev {
			data["previous_severity"] = old
			if d := now.Add(ResponseTarget(sev)); sev < old && d.Before(c.Due[DueResponse]) {
				c.Due[DueResponse] = d
			}
		}
		if sev == SeverityUrgent && old != SeverityUrgent && len(pol.desksWithRole(config.RolePager)) > 0 {
			// An escalation to 1 gets its own page.
			c.Due[DuePage] = now.Add(e.opts.PageFallback)
			if !have[firstVendorDesk(pol, have)] {
				c.Due[DuePage] = now
			}
		}
		evType = EventUpdated
		deliver := !c.Held
		note := f.Summary
		switch {
		case flapping && !c.Held:
			c.Held, evType, deliver = true, EventHeld, true
			note = fmt.Sprintf("flapping: confirmed more than %d times within %s; further recurrences are recorded here without desk events", pol.Tracker.FlapLimit, pol.Tracker.FlapWindow)
		case !flapping && c.Held && confirmation:
			c.Held, deliver = false, true
			note = "no longer flapping: " + f.Summary
		}
		var rows []Delivery
		if deliver {
			var err error
			if rows, err = outbox(targets(pol, *c, evType, have), after(*c, now), evType, nil, "", now); err != nil {
				return Event{}, nil, err
			}
		}
		return Event{Type: evType, At: now, Actor: ActorAgent, Note: note, Data: eventData(data)}, rows, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("append to case %s: %w", prev.ID, err)
	}
	e.logger.Info("case updated", "case", c.ID, "event", evType, "occurrences", c.Occurrences, "held", c.Held)
	e.committed(ctx, evType)
	e.pageIfDue(ctx, pol, c)
	return nil
}

// clear records that the open case of key no longer shows its fault
// (Case.ClearedAt); the case stays open until it is closed, by an operator
// or after auto_close_after of continuous health (autoclose.go).
func (e *Engine) clear(ctx context.Context, pol Policy, key, note string) error {
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	if !found || prev.State.Terminal() {
		return nil
	}
	have, _, err := deskSet(ctx, e.st, prev.ID)
	if err != nil {
		return err
	}
	now := e.now()
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		if c.ClearedAt.IsZero() {
			c.ClearedAt = now
		}
		var rows []Delivery
		if !c.Held {
			var err error
			if rows, err = outbox(targets(pol, *c, EventCleared, have), after(*c, now), EventCleared, nil, "", now); err != nil {
				return Event{}, nil, err
			}
		}
		return Event{Type: EventCleared, At: now, Actor: ActorAgent, Note: note}, rows, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear case %s: %w", prev.ID, err)
	}
	e.logger.Info("case cleared", "case", c.ID, "device", c.Device, "fault", c.DedupKey)
	e.committed(ctx, EventCleared)
	return nil
}

// fleetFirmwareKey is the key of an opening event's data that records the
// fleet's firmware for the device's model when the case opened: the
// version an RMA request asks the replacement to carry (RMARequest).
const fleetFirmwareKey = "fleet_firmware"

// noteFleetFirmware records in an opening event's data the firmware most
// devices of the device's model run in the poll being processed.
func (e *Engine) noteFleetFirmware(data map[string]any, device string) {
	if fw := FleetFirmware(e.lastPoll, DeviceModel(e.lastPoll, device)); fw != "" {
		data[fleetFirmwareKey] = fw
	}
}

// fleetFirmwareOf returns the fleet firmware the case's last (re)opening
// recorded ("" if none did).
func fleetFirmwareOf(evs []Event) string {
	for _, ev := range sinceOpened(evs) {
		if ev.Type != EventOpened && ev.Type != EventReopened {
			continue
		}
		var d map[string]any
		if json.Unmarshal(ev.Data, &d) == nil {
			if fw, ok := d[fleetFirmwareKey].(string); ok {
				return fw
			}
		}
	}
	return ""
}
