package rma

import (
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// Fault classes, by kind (Fault.Class, Case.Fault).
const (
	// Hardware: the vendor's.
	ClassMissing        = "missing"         // the serial is not among the module's tokens
	ClassFailed         = "failed"          // a check failed with a non-PIN error, or the token is in error_state
	ClassUnresponsive   = "unresponsive"    // no answer before the probe deadline
	ClassSelfTestFailed = "selftest_failed" // login_sign failed with a non-PIN error (the other checks pass)
	ClassSlow           = "slow"            // a check slower than slow_threshold
	// Operational: in house.
	ClassPINLocked    = "pin_locked"    // the token reports user_pin_locked
	ClassLoginRefused = "login_refused" // login_sign refused the agent's PIN (CKR_PIN_INCORRECT, ...)
	ClassModuleError  = "module_error"  // the library would not load or initialise, or the worker crashed
	ClassPINCountLow  = "pin_count_low" // user_pin_count_low or user_pin_final_try
	// Firmware: the vendor's (an update).
	ClassBelowMinimum = "below_minimum" // below firmware.minimum
	ClassNotApproved  = "not_approved"  // not in firmware.approved
	// Contract: in house, from the inventory and the clock.
	ClassExpiring = "expiring" // expires within 60, 30 or 7 days
	ClassExpired  = "expired"
)

// stateClasses are the faults a poll can tell present or absent even when
// the token did not report; every other class needs the token's report.
var stateClasses = map[string]bool{ClassMissing: true, ClassUnresponsive: true, ClassModuleError: true}

// Observed is what one poll shows of one device: its faults (at most one
// hardware, one operational and one firmware fault), and whether the token
// reported, which says which absent faults the poll could have seen.
type Observed struct {
	Serial string
	Device string
	Module string
	// At is when the poll was classified; Fresh is true when it ran in a
	// fresh worker (fresh C_Initialize).
	At    time.Time
	Fresh bool
	// TokenReported is true when the token reported in this poll.
	TokenReported bool
	Faults        []Fault
}

// Sees reports whether the poll could tell a fault of the class present or
// absent: a token that did not report says nothing about its PIN,
// firmware, self-test or speed.
func (o Observed) Sees(class string) bool { return o.TokenReported || stateClasses[class] }

// DeviceFaults derives the faults of one device from its latest poll
// (support-model.md section 2; issue 3 item 2). It is a pure function of
// its inputs; cfg gives the firmware policy, the slow threshold and the
// module library. Each Fault's Description holds the device facts a vendor
// asks for (section 5) and what was observed; the confirmation (Tracker)
// adds since when, how often and what level 1 tried.
func DeviceFaults(st collector.DeviceStatus, cfg *config.Config) Observed {
	o := Observed{Serial: st.Serial, Device: st.Device, Module: st.Module, At: st.Updated, Fresh: st.Fresh,
		TokenReported: st.Reported && st.Token != nil}
	header := deviceHeader(st, cfg)
	add := func(kind Kind, class, what, observed string) {
		o.Faults = append(o.Faults, Fault{
			Serial: st.Serial, Device: st.Device, Kind: kind, Class: class,
			Summary:     fmt.Sprintf("%s (serial %s): %s", st.Device, st.Serial, what),
			Description: header + "Observed: " + observed + "\n",
			ObservedAt:  st.Updated,
		})
	}
	switch st.State {
	case collector.StateMissing:
		add(KindHardware, ClassMissing, "missing from module "+st.Module, st.Reason)
	case collector.StateUnresponsive:
		add(KindHardware, ClassUnresponsive, "unresponsive (no answer before the probe deadline)", st.Reason)
	case collector.StateModuleError:
		add(KindOperational, ClassModuleError, "PKCS#11 module "+st.Module+" error", st.Reason)
	case collector.StateFailed:
		if !o.TokenReported {
			add(KindHardware, ClassFailed, "failed", st.Reason)
		}
	}
	if !o.TokenReported {
		return o
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
	if cfg.SlowThreshold > 0 {
		for _, c := range st.Checks {
			if c.OK && c.NotRun == "" && c.Duration > cfg.SlowThreshold {
				slow = append(slow, fmt.Sprintf("check %s took %s (slow_threshold %s)", c.Name, c.Duration.Round(time.Millisecond), cfg.SlowThreshold))
			}
		}
	}
	switch {
	case len(hwErrs) > 0:
		add(KindHardware, ClassFailed, "failed: "+strings.Join(hwErrs, ", "), st.Reason)
	case selftest != "":
		add(KindHardware, ClassSelfTestFailed, "crypto self-test failed: login_sign "+selftest, st.Reason)
	case len(slow) > 0:
		add(KindHardware, ClassSlow, "slow: "+slow[0], strings.Join(slow, "; "))
	}

	// Operational: PIN locked, else login refused, else PIN count low.
	switch {
	case tok.HasFlag(p11.FlagUserPINLocked):
		add(KindOperational, ClassPINLocked, "user PIN locked", st.Reason)
	case len(opErrs) > 0:
		add(KindOperational, ClassLoginRefused, "login refused: "+strings.Join(opErrs, ", "), st.Reason)
	case tok.HasFlag(p11.FlagUserPINFinalTry):
		add(KindOperational, ClassPINCountLow, "user PIN has one try left", "the token reports user_pin_final_try")
	case tok.HasFlag(p11.FlagUserPINCountLow):
		add(KindOperational, ClassPINCountLow, "user PIN retry counter low", "the token reports user_pin_count_low")
	}

	// Firmware: below the minimum, else not approved.
	fw := cfg.Firmware
	switch {
	case tok.Firmware == "":
		// Unknown (C_GetTokenInfo never answered): no firmware verdict.
	case fw.Minimum != "" && !collector.FirmwareCompliant(tok.Firmware, config.Firmware{Minimum: fw.Minimum}):
		add(KindFirmware, ClassBelowMinimum, fmt.Sprintf("firmware %s below the approved minimum %s", tok.Firmware, fw.Minimum),
			fmt.Sprintf("the token reports firmware %q; firmware.minimum is %q", tok.Firmware, fw.Minimum))
	case len(fw.Approved) > 0 && !collector.FirmwareCompliant(tok.Firmware, config.Firmware{Approved: fw.Approved}):
		add(KindFirmware, ClassNotApproved, fmt.Sprintf("firmware %s not approved", tok.Firmware),
			fmt.Sprintf("the token reports firmware %q; firmware.approved is %s", tok.Firmware, strings.Join(fw.Approved, ", ")))
	}
	return o
}

// checkFailure returns a check's error and whether it counts as a failure:
// a check not attempted counts only when its last real outcome stands.
func checkFailure(c p11.Check) (string, bool) {
	if c.OK || (c.NotRun != "" && c.Error == "") {
		return "", false
	}
	if c.Error == "" {
		return "failed", true
	}
	return c.Error, true
}

// deviceHeader is the part of a description every vendor asks for: the
// device, its versions, its library, environment, pool and contract.
func deviceHeader(st collector.DeviceStatus, cfg *config.Config) string {
	var b strings.Builder
	inv := st.Inventory
	fmt.Fprintf(&b, "Device: %s, serial %s", st.Device, st.Serial)
	if t := st.Token; t != nil {
		fmt.Fprintf(&b, ", model %s by %s, firmware %s, hardware %s, label %q",
			orUnknown(t.Model), orUnknown(t.Manufacturer), orUnknown(t.Firmware), orUnknown(t.Hardware), t.Label)
		if !st.Reported {
			b.WriteString(" (as last reported")
			if !st.LastSuccess.IsZero() {
				b.WriteString(" ok at " + st.LastSuccess.UTC().Format(time.RFC3339))
			}
			b.WriteString(")")
		}
	} else {
		b.WriteString(", model and versions unknown (the token has not reported since the agent started)")
	}
	b.WriteString("\n")
	lib := "library unknown"
	if m, ok := cfg.Module(st.Module); ok {
		lib = "library " + m.Library
	}
	fmt.Fprintf(&b, "PKCS#11 module: %s, %s\n", st.Module, lib)
	fmt.Fprintf(&b, "Environment: %s", orUnknown(inv.Environment))
	if inv.Pool != "" {
		p, _ := cfg.Pool(inv.Pool)
		fmt.Fprintf(&b, "; pool %s (min_healthy %d)", inv.Pool, p.MinHealthy)
	} else {
		b.WriteString("; no pool")
	}
	if !inv.IsCommissioned() {
		b.WriteString("; not commissioned")
	}
	b.WriteString("\n")
	b.WriteString(contractLine(inv) + "\n")
	return b.String()
}

// contractLine describes a device's support contract.
func contractLine(inv config.Device) string {
	c := inv.Contract
	if !c.HasContract() {
		return "Contract: none"
	}
	s := fmt.Sprintf("Contract: %s, tier %s, region %s", orUnknown(c.ID), c.Tier, orUnknown(c.Region))
	if !c.Expires.IsZero() {
		s += ", expires " + c.Expires.String()
	}
	return s
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return strings.TrimSpace(s)
}

// Contract expiry thresholds in days: a case is opened at the first and its
// description updated at each following one.
var contractThresholds = []int{60, 30, 7}

// ContractStatus says where a device's support contract stands on a day.
type ContractStatus struct {
	// Active is true while the device has a contract (a tier) that has not
	// expired: the vendor takes its hardware and firmware cases.
	Active bool
	// Reason says why the vendor cannot take a case when Active is false.
	Reason string
	// DaysLeft counts the days from today to the expiry day (0 on the
	// expiry day itself, negative after); meaningful when Expires is set.
	DaysLeft int
}

// Contract reports the status of a device's contract at now. A contract
// covers its whole expiry day (UTC) and has expired from the next day on.
func Contract(inv config.Device, now time.Time) ContractStatus {
	c := inv.Contract
	if !c.HasContract() {
		return ContractStatus{Reason: "the device has no support contract: no vendor case, no RMA"}
	}
	if c.Expires.IsZero() {
		return ContractStatus{Active: true}
	}
	today := config.DateOf(now.UTC())
	days := int(c.Expires.Sub(today.Time).Hours() / 24)
	if days < 0 {
		return ContractStatus{DaysLeft: days, Reason: fmt.Sprintf("contract %s expired on %s: no vendor case, no RMA", orUnknown(c.ID), c.Expires)}
	}
	return ContractStatus{Active: true, DaysLeft: days}
}

// ContractFault returns the contract fault of a device at now, if any:
// expired, or expiring within 60, 30 or 7 days. The description names the
// threshold, not the day count, so it changes only when a threshold is
// crossed. These faults come from the inventory and the clock and need no
// confirmation.
func ContractFault(inv config.Device, now time.Time) (Fault, bool) {
	c := inv.Contract
	if !c.HasContract() || c.Expires.IsZero() {
		return Fault{}, false
	}
	st := Contract(inv, now)
	f := Fault{Serial: inv.Serial, Device: inv.Name, Kind: KindContract, ObservedAt: now, ConfirmedAt: now}
	header := fmt.Sprintf("Device: %s, serial %s\nEnvironment: %s\n%s\n", inv.Name, inv.Serial, orUnknown(inv.Environment), contractLine(inv))
	if !st.Active {
		f.Class = ClassExpired
		f.Summary = fmt.Sprintf("%s (serial %s): support contract %s expired on %s", inv.Name, inv.Serial, orUnknown(c.ID), c.Expires)
		f.Description = header + fmt.Sprintf("Observed: the support contract expired on %s; the vendor takes no case and no RMA for this device until it is renewed (update contract.expires in the inventory).\n", c.Expires)
		return f, true
	}
	threshold := 0
	for _, t := range contractThresholds {
		if st.DaysLeft <= t {
			threshold = t
		}
	}
	if threshold == 0 {
		return Fault{}, false
	}
	f.Class = ClassExpiring
	f.Summary = fmt.Sprintf("%s (serial %s): support contract %s expires on %s (within %d days)", inv.Name, inv.Serial, orUnknown(c.ID), c.Expires, threshold)
	f.Description = header + fmt.Sprintf("Observed: the support contract expires on %s, within %d days (reminders at %s days before). Renew it to keep vendor support and hardware replacement.\n",
		c.Expires, threshold, joinInts(contractThresholds, "/"))
	return f, true
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, sep)
}
