package rma

// Replacement onboarding (issue 10 section 5). While a case waits for a
// replacement or repaired unit (StateReplacementShipped,
// StateRepairedShipped), every poll of the device's module is followed by
// a fresh one (a new C_Initialize: the slot list is frozen at initialise
// time). A token of that module with the device's label and a serial not in
// the inventory is the replacement: its serial goes into the device's serial
// history and the collector follows it (Onboarding.Follow). Then the unit is
// checked (onboard_ready.go): ready, the case's install event fires
// (Onboarding.Install) with the evidence as its note; not ready, the case
// says what is missing, once per distinct reason.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hsm-agent/hsm-agent/collector/health"
)

// EventOnboarding is a case event of replacement onboarding: the unit was
// found, or what it still lacks. Desks that have the case receive it.
const EventOnboarding = "case.onboarding"

// Onboarding wires replacement onboarding into the engine
// (EngineOptions.Onboarding); nil leaves it off.
type Onboarding struct {
	// Install fires the install event of a waiting case with the
	// evidence as its note (the engine's transition entry point). It runs
	// on Run's goroutine, so it must not wait for the engine's queue. An
	// error is logged once and the install is tried again at the next poll.
	Install func(ctx context.Context, caseID, evidence string) error
	// Follow makes the collector poll the device under the replacement's
	// serial from now on (collector.FollowSerial); nil means the collector
	// is not told (the serial history still is).
	Follow func(device, serial string)
	// Labels gives the label a device's token was last read with, when the
	// agent has not seen the token since it started (*store.Store); nil
	// means only labels seen since start are known.
	Labels interface {
		DeviceLabel(ctx context.Context, device string) (string, error)
	}
}

// onboarder is the engine's onboarding state, owned by Run's goroutine.
type onboarder struct {
	opts Onboarding
	// said is the last onboarding note per case (seeded from the case's
	// events), so that a reason is told once, not every poll.
	said map[string]string
	// failed is the last install error logged per case.
	failed map[string]string
	// followed is the serial each device was told to follow since the
	// last reload: a snapshot still showing the old serial was taken
	// before the collector followed, and must not record it again.
	followed map[string]string
}

func newOnboarder(o *Onboarding) *onboarder {
	if o == nil || o.Install == nil {
		return nil
	}
	return &onboarder{opts: *o, said: map[string]string{}, failed: map[string]string{}, followed: map[string]string{}}
}

// stale reports whether a device's poll was taken before the collector
// followed the device's replacement (its serial is not the followed one).
func (o *onboarder) stale(d health.Device) bool {
	if o == nil {
		return false
	}
	f, ok := o.followed[d.Device]
	return ok && f != d.Serial
}

// reloaded forgets the followed serials: a reload may register another
// unit for a device, which the collector then polls.
func (o *onboarder) reloaded() {
	if o != nil {
		clear(o.followed)
	}
}

// waiting reports whether a case waits for a replacement or repaired unit.
func waiting(c Case) bool {
	return c.State == StateReplacementShipped || c.State == StateRepairedShipped
}

// onboard runs replacement onboarding for the cases that wait for a unit
// of a device polled in this snapshot.
func (e *Engine) onboard(ctx context.Context, pol Policy, snap health.Poll) {
	if e.onb == nil {
		return
	}
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("onboarding: read the open cases; replacements are looked for at the next poll", "err", err)
		return
	}
	polled := map[string]bool{}
	for _, m := range snap.Polled {
		polled[m] = true
	}
	for _, c := range cases {
		if !waiting(c) {
			continue
		}
		for _, d := range snap.Devices {
			if d.Device == c.Device && polled[d.Module] && d.Polled && !d.ModuleWide {
				e.onboardCase(ctx, pol, snap, c, d)
			}
		}
	}
}

// onboardCase looks for the unit a case waits for and, once the device is
// polled under it, checks that it is ready.
func (e *Engine) onboardCase(ctx context.Context, pol Policy, snap health.Poll, c Case, d health.Device) {
	if m, ok := snap.Module(d.Module); ok && !m.Fresh {
		e.scheduleRecheck(d.Module, 0) // a fresh C_Initialize sees slots added since
	}
	unit := d.Serial != c.Serial || (c.State == StateRepairedShipped && d.Reported)
	if unit {
		e.checkUnit(ctx, pol, snap, c, d)
		return
	}
	label := e.deviceLabel(ctx, d)
	if label == "" {
		e.say(ctx, pol, c, fmt.Sprintf("waiting for the unit of %s: its token label is unknown (never read since the state database was created), so no token can be recognised as its replacement", c.Device), nil)
		return
	}
	var found []health.Unexpected
	for _, u := range snap.Unexpected {
		if u.Module == d.Module && strings.TrimSpace(u.Label) == label && u.Serial != c.Serial {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return
	case 1:
		e.adopt(ctx, pol, c, d, found[0])
	default:
		serials := make([]string, len(found))
		for i, u := range found {
			serials[i] = u.Serial
		}
		e.say(ctx, pol, c, fmt.Sprintf("%d tokens labelled %q appeared in module %s (serials %s): none is taken as the replacement of %s; remove or relabel all but one",
			len(found), label, d.Module, strings.Join(serials, ", "), c.Device), nil)
	}
}

// deviceLabel is the label the device's token was last read with: as seen
// since start, else from the store.
func (e *Engine) deviceLabel(ctx context.Context, d health.Device) string {
	if d.Token != nil && strings.TrimSpace(d.Token.Label) != "" {
		return strings.TrimSpace(d.Token.Label)
	}
	if e.onb.opts.Labels == nil {
		return ""
	}
	label, err := e.onb.opts.Labels.DeviceLabel(ctx, d.Device)
	if err != nil {
		e.logger.Error("onboarding: read the device's last label", "device", d.Device, "err", err)
	}
	return strings.TrimSpace(label)
}

// adopt records the replacement's serial in the device's history, has the
// collector follow it and tells the case.
func (e *Engine) adopt(ctx context.Context, pol Policy, c Case, d health.Device, u health.Unexpected) {
	log := e.logger.With("case", c.ID, "device", d.Device, "serial", u.Serial)
	if _, err := e.st.RecordSerial(ctx, d.Device, u.Serial, e.now()); err != nil {
		log.Error("onboarding: record the replacement's serial; tried again at the next poll", "err", err)
		return
	}
	e.serials[d.Device] = u.Serial
	e.onb.followed[d.Device] = u.Serial
	if e.onb.opts.Follow != nil {
		e.onb.opts.Follow(d.Device, u.Serial)
	}
	e.scheduleRecheck(d.Module, 0)
	log.Info("replacement unit found: the device follows its serial", "previous", d.Serial, "label", u.Label)
	note := fmt.Sprintf("replacement unit found for %s: serial %s (was %s), label %q, model %s, firmware %s, in module %s slot %d; the device follows the new serial (the configuration keeps %s until it is edited)",
		d.Device, u.Serial, c.Serial, u.Label, orUnknown(u.Model), orUnknown(u.Firmware), u.Module, u.SlotID, d.Inventory.Serial)
	e.say(ctx, pol, c, note, map[string]any{"serial": u.Serial, "previous_serial": c.Serial, "module": u.Module, "slot": u.SlotID, "label": u.Label})
}

// say records an onboarding note on a case (EventOnboarding, to the desks
// that have it), unless it is the case's last onboarding note already.
func (e *Engine) say(ctx context.Context, pol Policy, c Case, note string, data map[string]any) {
	last, ok := e.onb.said[c.ID]
	if !ok {
		last = e.lastOnboardingNote(ctx, c.ID)
	}
	if last == note {
		e.onb.said[c.ID] = note
		return
	}
	have, _, err := deskSet(ctx, e.st, c.ID)
	if err != nil {
		e.logger.Error("onboarding: the case's desks", "case", c.ID, "err", err)
		return
	}
	now := e.now()
	_, err = e.st.Transition(ctx, c.ID, func(cur *Case) (Event, []Delivery, error) {
		if !waiting(*cur) {
			return Event{}, nil, ErrNoChange
		}
		rows, err := outbox(targets(pol, *cur, EventOnboarding, have), after(*cur, now), EventOnboarding, nil, "", now)
		ev := Event{Type: EventOnboarding, At: now, Actor: ActorAgent, Note: note}
		if data != nil {
			ev.Data = eventData(data)
		}
		return ev, rows, err
	})
	if err != nil {
		if !errors.Is(err, ErrNoChange) {
			e.logger.Error("onboarding: record the note on the case", "case", c.ID, "err", err)
		}
		return
	}
	e.onb.said[c.ID] = note
	e.committed(ctx, EventOnboarding)
}

// lastOnboardingNote is the note of the case's last onboarding event.
func (e *Engine) lastOnboardingNote(ctx context.Context, id string) string {
	evs, err := e.st.Events(ctx, id)
	if err != nil {
		e.logger.Error("onboarding: read the case's events", "case", id, "err", err)
		return ""
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == EventOnboarding {
			return evs[i].Note
		}
	}
	return ""
}
