package rma

import (
	"context"
	"fmt"
	"strings"

	"github.com/hsm-agent/hsm-agent/collector/health"
)

// ClassFleetMismatch is the firmware fault of a replacement unit whose
// firmware is allowed by the policy but is not the fleet's (FleetFirmware).
const ClassFleetMismatch = "fleet_mismatch"

// readiness is what a unit showed in one poll: the evidence of what is
// ready, what is missing, and the firmware fault when its firmware is not
// the fleet's or not allowed.
type readiness struct {
	evidence, missing []string
	firmware          *Fault
}

// unitReadiness checks the unit a device is polled under (issue 10 section
// 5): it reported; token initialised; user PIN initialised; the logged-in
// self-test passes where the device has a PIN; no hardware fault; firmware
// equal to the fleet's (the other devices of its model) and allowed by the
// firmware policy (the collector's firmware findings).
func unitReadiness(snap health.Poll, c Case, d health.Device, pol Policy) readiness {
	var r readiness
	if !d.Reported || d.Token == nil {
		r.missing = append(r.missing, fmt.Sprintf("the unit (serial %s) did not report in the latest poll: %s", d.Serial, d.Reason))
		return r
	}
	t := d.Token
	check := func(ok bool, good, bad string) {
		if ok {
			r.evidence = append(r.evidence, good)
		} else {
			r.missing = append(r.missing, bad)
		}
	}
	check(t.Initialized, "token initialised", "the token is not initialised (token_initialized not set)")
	check(t.UserPINInitialized, "user PIN initialised", "the user PIN is not initialised (user_pin_initialized not set)")
	switch d.SelfTest {
	case health.SelfTestNone:
		r.evidence = append(r.evidence, "no logged-in self-test (the device has no PIN configured)")
	case health.SelfTestPending:
		r.missing = append(r.missing, "the logged-in self-test (login_sign) has not run on the unit yet")
	default:
		check(d.SelfTest == health.SelfTestPassed, "logged-in self-test (login_sign) passed", "the logged-in self-test (login_sign) failed: "+d.SelfTestError)
	}
	for _, f := range d.Findings {
		if f.Kind == health.KindHardware {
			r.missing = append(r.missing, "the unit shows a hardware fault: "+f.Reason)
		}
	}
	r.checkFirmware(snap, c, d, pol)
	return r
}

// checkFirmware compares the unit's firmware with the fleet's and the
// policy, and describes the firmware fault of a mismatch.
func (r *readiness) checkFirmware(snap health.Poll, c Case, d health.Device, pol Policy) {
	fw, model := strings.TrimSpace(d.Token.Firmware), strings.TrimSpace(d.Token.Model)
	others := snap
	others.Devices = nil
	for _, o := range snap.Devices {
		if o.Device != d.Device {
			others.Devices = append(others.Devices, o)
		}
	}
	fleet := FleetFirmware(others, model)
	var wrong []string
	class := ""
	for _, f := range d.Findings {
		if f.Kind == health.KindFirmware {
			wrong, class = append(wrong, f.Reason), f.Class
		}
	}
	switch {
	case fleet != "" && fw != fleet:
		wrong = append(wrong, fmt.Sprintf("firmware %s differs from the fleet's firmware %s (model %s)", orUnknown(fw), fleet, orUnknown(model)))
		if class == "" {
			class = ClassFleetMismatch
		}
	case len(wrong) == 0 && fleet == "":
		r.evidence = append(r.evidence, fmt.Sprintf("firmware %s allowed (no other device of model %s to compare with)", orUnknown(fw), orUnknown(model)))
	case len(wrong) == 0:
		r.evidence = append(r.evidence, fmt.Sprintf("firmware %s = the fleet's (model %s), allowed", fw, orUnknown(model)))
	}
	if len(wrong) == 0 {
		return
	}
	r.missing = append(r.missing, wrong...)
	r.firmware = &Fault{Serial: d.Serial, Device: d.Device, Kind: KindFirmware, Class: class,
		Summary: fmt.Sprintf("%s (serial %s): replacement unit firmware: %s", d.Device, d.Serial, strings.Join(wrong, "; ")),
		Description: deviceHeader(d, pol) + "Observed: " + strings.Join(wrong, "; ") + "\n" +
			fmt.Sprintf("RMA case: %s (the unit replaces serial %s; it is not installed until its firmware is the fleet's %s)\n", c.ID, c.Serial, orUnknown(fleet)),
		ObservedAt: d.Updated}
}

// checkUnit checks the unit a waiting case's device is polled under:
// ready, the case's install fires with the evidence; not ready, the case
// says what is missing (and a firmware mismatch gets its own case).
func (e *Engine) checkUnit(ctx context.Context, pol Policy, snap health.Poll, c Case, d health.Device) {
	r := unitReadiness(snap, c, d, pol)
	if len(r.missing) == 0 {
		e.install(ctx, c, d, r)
		return
	}
	note := fmt.Sprintf("the unit of %s (serial %s) is not ready to install: %s", c.Device, d.Serial, strings.Join(r.missing, "; "))
	if r.firmware != nil {
		if id, ok := e.firmwareCase(ctx, pol, snap, d, *r.firmware); ok {
			note += "; firmware case " + id
		}
	}
	e.say(ctx, pol, c, note, map[string]any{"serial": d.Serial, "missing": r.missing})
}

// install fires the case's install event with the evidence as its note.
func (e *Engine) install(ctx context.Context, c Case, d health.Device, r readiness) {
	evidence := fmt.Sprintf("unit serial %s (replacing %s) in module %s is ready: %s", d.Serial, c.Serial, d.Module, strings.Join(r.evidence, "; "))
	log := e.logger.With("case", c.ID, "device", d.Device, "serial", d.Serial)
	if err := e.onb.opts.Install(ctx, c.ID, evidence); err != nil {
		if e.onb.failed[c.ID] != err.Error() {
			e.onb.failed[c.ID] = err.Error()
			log.Error("onboarding: fire install; tried again at every poll (logged once)", "err", err)
		}
		return
	}
	delete(e.onb.failed, c.ID)
	delete(e.onb.said, c.ID)
	log.Info("replacement unit installed", "evidence", evidence)
}

// firmwareCase opens the firmware case of a replacement unit unless its
// key has an open case already, and returns the case's ID. A class the
// collector reports (not approved, below minimum) is seeded in the
// tracker, so that its confirmation does not append to the case.
func (e *Engine) firmwareCase(ctx context.Context, pol Policy, snap health.Poll, d health.Device, f Fault) (string, bool) {
	log := e.logger.With("device", d.Device, "serial", d.Serial, "fault", f.DedupKey())
	if prev, found, err := e.st.CaseByKey(ctx, f.DedupKey()); err != nil {
		log.Error("onboarding: look up the firmware case", "err", err)
		return "", false
	} else if found && !prev.State.Terminal() {
		return prev.ID, true
	}
	f.ConfirmedAt = e.now()
	f.Description += e.agentLine()
	sev, impact := Severity(severityInput(pol, snap, d, f))
	if err := e.record(ctx, pol, f, d.Inventory, sev, impact, false, true); err != nil {
		log.Error("onboarding: open the firmware case; tried again at the next poll", "err", err)
		return "", false
	}
	if f.Class != ClassFleetMismatch {
		e.tracker.MarkConfirmed(f)
	}
	c, found, err := e.st.CaseByKey(ctx, f.DedupKey())
	if err != nil || !found {
		log.Error("onboarding: read the firmware case back", "err", err)
		return "", false
	}
	return c.ID, true
}
