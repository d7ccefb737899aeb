package collector

import (
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// Finding is one typed reason a device is not healthy (health.Finding).
type Finding = health.Finding

// DeviceFindings derives the typed findings of one device from its status
// (support-model.md section 2): at most one hardware finding (failed, else
// self-test failed, else slow; or missing, unresponsive, failed before the
// serial was known), one operational (module error; PIN locked, else login
// refused, else PIN count low) and one firmware finding (below the minimum,
// else not approved). It is a pure function; pol gives the slow threshold
// and the firmware policy. A token that did not report says nothing about
// its PIN, firmware, self-test or speed.
func DeviceFindings(st DeviceStatus, pol Policy) []Finding {
	var fs []Finding
	add := func(kind health.Kind, class, reason, observed string) {
		fs = append(fs, Finding{Kind: kind, Class: class, Reason: reason, Observed: observed})
	}
	reported := st.Reported && st.Token != nil
	switch st.State {
	case StateMissing:
		add(health.KindHardware, health.ClassMissing, "missing from module "+st.Module, st.Reason)
	case StateUnresponsive:
		add(health.KindHardware, health.ClassUnresponsive, "unresponsive (no answer before the probe deadline)", st.Reason)
	case StateModuleError:
		add(health.KindOperational, health.ClassModuleError, "PKCS#11 module "+st.Module+" error", st.Reason)
	case StateFailed:
		if !reported {
			add(health.KindHardware, health.ClassFailed, "failed", st.Reason)
		}
	}
	if !reported {
		return fs
	}
	tok := st.Token

	// Hardware: failed, else self-test failed, else slow.
	var hwErrs, opErrs []string
	selftest := ""
	for _, c := range st.Checks {
		e, failed := checkFailure(c)
		switch {
		case !failed:
		case p11.IsOperationalError(e):
			opErrs = append(opErrs, c.Name+" "+e)
		case c.Name == p11.CheckLoginSign:
			selftest = e
		default:
			hwErrs = append(hwErrs, c.Name+" "+e)
		}
	}
	if tok.HasFlag(p11.FlagErrorState) {
		hwErrs = append(hwErrs, "token reports error_state")
	}
	var slow []string
	for _, c := range st.Checks {
		if isSlow(c, pol) {
			slow = append(slow, fmt.Sprintf("check %s took %s (slow_threshold %s)", c.Name, c.Duration.Round(time.Millisecond), pol.SlowThreshold))
		}
	}
	switch {
	case len(hwErrs) > 0:
		add(health.KindHardware, health.ClassFailed, "failed: "+strings.Join(hwErrs, ", "), st.Reason)
	case selftest != "":
		add(health.KindHardware, health.ClassSelfTestFailed, "crypto self-test failed: login_sign "+selftest, st.Reason)
	case len(slow) > 0:
		add(health.KindHardware, health.ClassSlow, "slow: "+slow[0], strings.Join(slow, "; "))
	}

	// Operational: PIN locked, else login refused, else PIN count low.
	switch {
	case tok.HasFlag(p11.FlagUserPINLocked):
		add(health.KindOperational, health.ClassPINLocked, "user PIN locked", st.Reason)
	case len(opErrs) > 0:
		add(health.KindOperational, health.ClassLoginRefused, "login refused: "+strings.Join(opErrs, ", "), st.Reason)
	case tok.HasFlag(p11.FlagUserPINFinalTry):
		add(health.KindOperational, health.ClassPINCountLow, "user PIN has one try left", "the token reports user_pin_final_try")
	case tok.HasFlag(p11.FlagUserPINCountLow):
		add(health.KindOperational, health.ClassPINCountLow, "user PIN retry counter low", "the token reports user_pin_count_low")
	}

	// Firmware: below the minimum, else not approved.
	fw := pol.Firmware
	switch {
	case tok.Firmware == "":
		// Unknown (C_GetTokenInfo never answered): no firmware verdict.
	case fw.Minimum != "" && !FirmwareCompliant(tok.Firmware, config.Firmware{Minimum: fw.Minimum}):
		add(health.KindFirmware, health.ClassBelowMinimum, fmt.Sprintf("firmware %s below the approved minimum %s", tok.Firmware, fw.Minimum),
			fmt.Sprintf("the token reports firmware %q; firmware.minimum is %q", tok.Firmware, fw.Minimum))
	case len(fw.Approved) > 0 && !FirmwareCompliant(tok.Firmware, config.Firmware{Approved: fw.Approved}):
		add(health.KindFirmware, health.ClassNotApproved, fmt.Sprintf("firmware %s not approved", tok.Firmware),
			fmt.Sprintf("the token reports firmware %q; firmware.approved is %s", tok.Firmware, strings.Join(fw.Approved, ", ")))
	}
	return fs
}

// Health is the snapshot as the case engine reads it: per device its
// findings and facts, without PKCS#11 types.
func (s Snapshot) Health() health.Poll {
	p := health.Poll{Time: s.Time, Polled: s.Polled}
	for _, m := range s.Modules {
		p.Modules = append(p.Modules, health.Module{Name: m.Name, Start: m.Start, Duration: m.Duration, Fresh: m.Fresh})
	}
	for _, d := range s.Devices {
		p.Devices = append(p.Devices, d.Health())
	}
	return p
}

// Health is the device status as the case engine reads it.
func (d DeviceStatus) Health() health.Device {
	h := health.Device{Device: d.Device, Serial: d.Serial, Module: d.Module, Inventory: d.Inventory,
		Polled: d.Polled(), Up: d.Up(), ModuleWide: d.ModuleWide, Reported: d.Reported && d.Token != nil,
		Reason: d.Reason, LastSuccess: d.LastSuccess, Updated: d.Updated, Fresh: d.Fresh, Findings: d.Findings}
	if t := d.Token; t != nil {
		h.Token = &health.Token{Model: t.Model, Manufacturer: t.Manufacturer, Firmware: t.Firmware, Hardware: t.Hardware, Label: t.Label}
	}
	if slot, label, ok := d.ReadSlot(); ok {
		h.ReadSlot = &health.Slot{ID: slot, Label: label}
	}
	return h
}
