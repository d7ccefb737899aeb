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
	if f, ok := stateFinding(st); ok {
		fs = append(fs, f)
	}
	if !st.Reported || st.Token == nil {
		return fs
	}
	errs := checkErrorsOf(st)
	for _, f := range []func() (Finding, bool){
		func() (Finding, bool) { return hardwareFinding(st, errs, pol) },
		func() (Finding, bool) { return operationalFinding(st, errs) },
		func() (Finding, bool) { return firmwareFinding(*st.Token, pol.Firmware) },
	} {
		if f, ok := f(); ok {
			fs = append(fs, f)
		}
	}
	return fs
}

func found(kind health.Kind, class, reason, observed string) (Finding, bool) {
	return Finding{Kind: kind, Class: class, Reason: reason, Observed: observed}, true
}

// stateFinding is the finding a state gives without the token's report:
// missing, unresponsive, module error, or failed before the serial was known.
func stateFinding(st DeviceStatus) (Finding, bool) {
	switch st.State {
	case StateMissing:
		return found(health.KindHardware, health.ClassMissing, "missing from module "+st.Module, st.Reason)
	case StateUnresponsive:
		return found(health.KindHardware, health.ClassUnresponsive, "unresponsive (no answer before the probe deadline)", st.Reason)
	case StateModuleError:
		return found(health.KindOperational, health.ClassModuleError, "PKCS#11 module "+st.Module+" error", st.Reason)
	case StateFailed:
		if !st.Reported || st.Token == nil {
			return found(health.KindHardware, health.ClassFailed, "failed", st.Reason)
		}
	}
	return Finding{}, false
}

// checkErrors sorts the failed checks of a poll (checkFailure) by who acts.
type checkErrors struct {
	hardware    []string // "check error", and error_state
	operational []string // PIN errors (p11.IsOperationalError)
	selfTest    string   // login_sign's non-PIN error
}

func checkErrorsOf(st DeviceStatus) checkErrors {
	var ce checkErrors
	for _, c := range st.Checks {
		e, failed := checkFailure(c)
		switch {
		case !failed:
		case p11.IsOperationalError(e):
			ce.operational = append(ce.operational, c.Name+" "+e)
		case c.Name == p11.CheckLoginSign:
			ce.selfTest = e
		default:
			ce.hardware = append(ce.hardware, c.Name+" "+e)
		}
	}
	if st.Token.HasFlag(p11.FlagErrorState) {
		ce.hardware = append(ce.hardware, "token reports error_state")
	}
	return ce
}

// hardwareFinding: failed, else self-test failed, else slow.
func hardwareFinding(st DeviceStatus, ce checkErrors, pol Policy) (Finding, bool) {
	var slow []string
	for _, c := range st.Checks {
		if isSlow(c, pol) {
			slow = append(slow, fmt.Sprintf("check %s took %s (slow_threshold %s)", c.Name, c.Duration.Round(time.Millisecond), pol.SlowThreshold))
		}
	}
	switch {
	case len(ce.hardware) > 0:
		return found(health.KindHardware, health.ClassFailed, "failed: "+strings.Join(ce.hardware, ", "), st.Reason)
	case ce.selfTest != "":
		return found(health.KindHardware, health.ClassSelfTestFailed, "crypto self-test failed: login_sign "+ce.selfTest, st.Reason)
	case len(slow) > 0:
		return found(health.KindHardware, health.ClassSlow, "slow: "+slow[0], strings.Join(slow, "; "))
	}
	return Finding{}, false
}

// operationalFinding: PIN locked, else login refused, else PIN count low.
func operationalFinding(st DeviceStatus, ce checkErrors) (Finding, bool) {
	tok := st.Token
	switch {
	case tok.HasFlag(p11.FlagUserPINLocked):
		return found(health.KindOperational, health.ClassPINLocked, "user PIN locked", st.Reason)
	case len(ce.operational) > 0:
		return found(health.KindOperational, health.ClassLoginRefused, "login refused: "+strings.Join(ce.operational, ", "), st.Reason)
	case tok.HasFlag(p11.FlagUserPINFinalTry):
		return found(health.KindOperational, health.ClassPINCountLow, "user PIN has one try left", "the token reports user_pin_final_try")
	case tok.HasFlag(p11.FlagUserPINCountLow):
		return found(health.KindOperational, health.ClassPINCountLow, "user PIN retry counter low", "the token reports user_pin_count_low")
	}
	return Finding{}, false
}

// firmwareFinding: end of life (the vendor services nothing until it is
// upgraded, support-model.md section 7), else below the minimum, else not
// approved; none while the version is unknown (C_GetTokenInfo never
// answered).
func firmwareFinding(tok p11.Token, fw config.Firmware) (Finding, bool) {
	switch {
	case tok.Firmware == "":
	case FirmwareEndOfLife(tok.Firmware, fw):
		return found(health.KindFirmware, health.ClassEndOfLife, fmt.Sprintf("firmware %s is end of life: the vendor does not service it until it is upgraded", tok.Firmware),
			fmt.Sprintf("the token reports firmware %q; firmware.end_of_life is %s", tok.Firmware, strings.Join(fw.EndOfLife, ", ")))
	case fw.Minimum != "" && !FirmwareCompliant(tok.Firmware, config.Firmware{Minimum: fw.Minimum}):
		return found(health.KindFirmware, health.ClassBelowMinimum, fmt.Sprintf("firmware %s below the approved minimum %s", tok.Firmware, fw.Minimum),
			fmt.Sprintf("the token reports firmware %q; firmware.minimum is %q", tok.Firmware, fw.Minimum))
	case len(fw.Approved) > 0 && !FirmwareCompliant(tok.Firmware, config.Firmware{Approved: fw.Approved}):
		return found(health.KindFirmware, health.ClassNotApproved, fmt.Sprintf("firmware %s not approved", tok.Firmware),
			fmt.Sprintf("the token reports firmware %q; firmware.approved is %s", tok.Firmware, strings.Join(fw.Approved, ", ")))
	}
	return Finding{}, false
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
	for _, u := range s.Unexpected {
		t := u.Token
		p.Unexpected = append(p.Unexpected, health.Unexpected{Module: u.Module, Serial: t.Serial, Label: t.Label,
			Model: t.Model, Firmware: t.Firmware, SlotID: t.SlotID, Since: u.Since})
	}
	return p
}

// Health is the device status as the case engine reads it.
func (d DeviceStatus) Health() health.Device {
	h := health.Device{Device: d.Device, Serial: d.Serial, Module: d.Module, Inventory: d.Inventory,
		Polled: d.Polled(), Up: d.Up(), ModuleWide: d.ModuleWide, Reported: d.Reported && d.Token != nil,
		Reason: d.Reason, LastSuccess: d.LastSuccess, Updated: d.Updated, Fresh: d.Fresh, Findings: d.Findings}
	if t := d.Token; t != nil {
		h.Token = &health.Token{Model: t.Model, Manufacturer: t.Manufacturer, Firmware: t.Firmware, Hardware: t.Hardware, Label: t.Label,
			Initialized: t.HasFlag(p11.FlagTokenInitialized), UserPINInitialized: t.HasFlag(p11.FlagUserPINInitialized)}
	}
	h.SelfTest, h.SelfTestError = d.selfTestState()
	if slot, label, ok := d.ReadSlot(); ok {
		h.ReadSlot = &health.Slot{ID: slot, Label: label}
	}
	return h
}

// selfTestState is the state of the device's logged-in self-test in its
// latest poll: none without a PIN, pending until login_sign ran on the
// token (it runs at most every selftest_interval), else passed or failed
// by the one rule of failed checks (checkFailure).
func (d DeviceStatus) selfTestState() (health.SelfTest, string) {
	if !d.SelfTestAsked {
		return health.SelfTestNone, ""
	}
	for _, c := range d.Checks {
		if c.Name != p11.CheckLoginSign {
			continue
		}
		if e, failed := checkFailure(c); failed {
			return health.SelfTestFailed, e
		}
		if c.OK {
			return health.SelfTestPassed, ""
		}
	}
	return health.SelfTestPending, ""
}
