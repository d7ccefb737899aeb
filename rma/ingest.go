package rma

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
)

// recover learns the still-active faults of open cases.
func (e *Engine) recover(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("recover open cases from the store; faults of open cases will open no duplicate but may not clear", "err", err)
		return
	}
	e.m.setOpen(cases)
	for _, c := range cases {
		if c.Kind == KindContract {
			continue
		}
		active, err := e.active(ctx, c.ID)
		if err != nil {
			e.logger.Error("recover case", "case", c.ID, "err", err)
			continue
		}
		if active {
			e.tracker.Seed(Fault{Serial: c.Serial, Device: c.Device, Kind: c.Kind, Class: c.Fault,
				Summary: c.Summary, Description: c.Description, ObservedAt: c.OpenedAt})
		}
	}
}

// active reports whether a case's fault is in force: its last fault event
// (opened, reopened, updated, held, cleared) is not a clearing.
func (e *Engine) active(ctx context.Context, id string) (bool, error) {
	evs, err := e.st.Events(ctx, id)
	if err != nil {
		return false, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].Type {
		case EventCleared:
			return false, nil
		case EventOpened, EventReopened, EventUpdated, EventHeld:
			return true, nil
		}
	}
	return true, nil
}

// process handles one snapshot: every device of the polled modules, and
// each polled module as a whole. A device whose state is its module's
// (the library failed before any token answered) says nothing about
// itself: its module is observed once, as one module-level fault.
func (e *Engine) process(ctx context.Context, snap health.Poll) {
	e.lastPoll = snap
	pol := *e.pol.Load()
	polled := map[string]bool{}
	for _, m := range snap.Polled {
		polled[m] = true
	}
	moduleWide := map[string][]health.Device{}
	for _, d := range snap.Devices {
		if !polled[d.Module] || !d.Polled {
			continue
		}
		if d.ModuleWide {
			moduleWide[d.Module] = append(moduleWide[d.Module], d)
			continue
		}
		e.recordSerial(ctx, d)
		e.recordSlot(ctx, d)
		e.observe(ctx, pol, DeviceFaults(d, pol), func(f Fault) (int, string, config.Device) {
			sev, impact := Severity(severityInput(pol, snap, d, f))
			return sev, impact, d.Inventory
		})
	}
	for _, m := range snap.Polled {
		mc := ModuleFaults(pol, snap, m, moduleWide[m])
		e.observe(ctx, pol, mc.observed, func(Fault) (int, string, config.Device) { return mc.sev, mc.impact, mc.inv })
	}
	e.onboard(ctx, pol, snap)
	if e.opts.Processed != nil {
		e.opts.Processed(snap.Polled)
	}
}

// observe feeds one observation to the tracker and records what it
// confirms or clears; rate gives a confirmed fault its severity, impact
// and the inventory device its case is routed by.
func (e *Engine) observe(ctx context.Context, pol Policy, o Observed, rate func(Fault) (int, string, config.Device)) {
	for _, ch := range e.tracker.Observe(o) {
		log := e.logger.With("device", o.Device, "serial", o.Serial, "fault", ch.Fault.DedupKey())
		switch ch.Type {
		case Confirmed:
			log.Info("fault confirmed", "flapping", ch.Flapping)
			f := ch.Fault
			f.Description += e.agentLine()
			sev, impact, inv := rate(f)
			if err := e.record(ctx, pol, f, inv, sev, impact, ch.Flapping, true); err != nil {
				log.Error("record the confirmed fault; it will be confirmed again", "err", err)
				e.tracker.Forget(f)
			}
		case Cleared:
			log.Info("fault cleared")
			if err := e.clear(ctx, pol, ch.Fault.DedupKey(), "the device no longer shows the fault"); err != nil {
				log.Error("record the cleared fault", "err", err)
			}
		}
	}
	if e.tracker.Pending(o.Serial) {
		e.scheduleRecheck(o.Module, pol.RecheckInterval)
	}
}

func (e *Engine) agentLine() string {
	v := e.opts.AgentVersion
	if v == "" {
		v = "(version unknown)"
	}
	return fmt.Sprintf("Agent: hsm-agent %s on %s/%s\n", v, runtime.GOOS, runtime.GOARCH)
}

// recordSerial keeps the device -> serial history in the store.
func (e *Engine) recordSerial(ctx context.Context, d health.Device) {
	if e.serials[d.Device] == d.Serial || e.onb.stale(d) {
		return
	}
	changed, err := e.st.RecordSerial(ctx, d.Device, d.Serial, e.now())
	if err != nil {
		e.logger.Error("record the device's serial", "device", d.Device, "serial", d.Serial, "err", err)
		return
	}
	e.serials[d.Device] = d.Serial
	if changed {
		e.logger.Info("device serial recorded", "device", d.Device, "serial", d.Serial)
	}
}

// recordSlot keeps where each device's token was last read (module, slot,
// label) in the store, for the probe after a restart; it writes only when
// that changes.
func (e *Engine) recordSlot(ctx context.Context, d health.Device) {
	if d.ReadSlot == nil || e.onb.stale(d) {
		return
	}
	slot := d.ReadSlot.ID
	seen := SlotSeen{Serial: d.Serial, Module: d.Module, SlotID: slot, Label: d.ReadSlot.Label}
	if e.slots[d.Device] == seen {
		return
	}
	if err := e.st.RecordSlot(ctx, d.Device, seen, e.now()); err != nil {
		e.logger.Error("record the device's slot", "device", d.Device, "serial", d.Serial, "slot", slot, "err", err)
		return
	}
	e.slots[d.Device] = seen
}

// severityInput gathers what the severity of a device's fault depends on;
// pool members are counted from the snapshot (healthy = up: healthy or
// degraded).
func severityInput(pol Policy, snap health.Poll, d health.Device, f Fault) SeverityInput {
	inv := d.Inventory
	in := SeverityInput{Kind: f.Kind, Class: f.Class, Environment: inv.Environment, Commissioned: inv.IsCommissioned(), Pool: inv.Pool}
	if inv.Pool == "" {
		return in
	}
	in.MinHealthy = pol.MinHealthy[inv.Pool]
	for _, o := range snap.Devices {
		if o.Inventory.Pool != inv.Pool || o.Serial == d.Serial {
			continue
		}
		switch {
		case !o.Polled:
			in.HealthUnknown = true
		case o.Up:
			in.HealthyLeft++
		}
	}
	return in
}

func (e *Engine) scheduleRecheck(module string, interval time.Duration) {
	if e.opts.Recheck == nil {
		return
	}
	if _, ok := e.rechecks[module]; !ok {
		e.rechecks[module] = time.Now().Add(interval)
	}
}

func (e *Engine) nextRecheck() (time.Time, bool) {
	var next time.Time
	for _, t := range e.rechecks {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, !next.IsZero()
}

func (e *Engine) fireRechecks() {
	now := time.Now()
	for m, t := range e.rechecks {
		if !t.After(now) {
			delete(e.rechecks, m)
			e.opts.Recheck(m)
		}
	}
}
