package collector

import (
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// Policy holds the thresholds health classification applies.
type Policy struct {
	// SlowThreshold marks a check slower than this as degraded; 0 disables it.
	SlowThreshold time.Duration
	// ProbeTimeout is only quoted in reasons of unresponsive devices.
	ProbeTimeout time.Duration
	// Firmware is the fleet's firmware policy (below_minimum, not_approved).
	Firmware config.Firmware
}

// PolicyFrom is the classification policy of a configuration.
func PolicyFrom(cfg *config.Config) Policy {
	return Policy{SlowThreshold: cfg.SlowThreshold, ProbeTimeout: cfg.ProbeTimeout, Firmware: cfg.Firmware}
}

// Verdict is the health of one inventory device in one module result.
type Verdict struct {
	State  State
	Kind   Kind
	Reason string
	// ModuleWide is set when the verdict is the module's, not the device's:
	// the library would not load or initialise, or the worker died outside
	// any token. The poll then says nothing about the device itself.
	ModuleWide bool
	// Token is the token that reported under the device's serial, nil if none did.
	Token *p11.Token
}

// Classify decides the health of the inventory device with the given serial
// from one poll result of its module. It is a pure function. Devices are
// matched by serial only, never by slot ID or label. In order:
//   - the serial reported: healthy, degraded or failed from its checks and flags;
//   - the serial was in flight when the deadline hit: unresponsive;
//   - a token hung before its serial was known: unresponsive too, since the
//     hung token may be this device and we cannot tell;
//   - a token failed token_info so its serial is unknown: failed, likewise;
//   - the serial's call crashed the worker: module_error for this device
//     only (a crash before the serial was known: module_error, it may be
//     this one);
//   - the module failed (could not load or initialise, worker crashed
//     outside any token): module_error;
//   - otherwise: missing.
func Classify(serial string, res probe.Result, pol Policy) Verdict {
	for i := range res.Tokens {
		if res.Tokens[i].Serial == serial {
			tok := res.Tokens[i]
			v := classifyToken(tok, pol)
			v.Token = &tok
			return v
		}
	}
	for _, u := range res.Unresponsive {
		if u.Serial == serial {
			return Verdict{State: StateUnresponsive, Kind: KindHardware,
				Reason: unresponsiveReason(u, pol)}
		}
	}
	for _, u := range res.Unresponsive {
		if u.Serial == "" {
			return Verdict{State: StateUnresponsive, Kind: KindHardware,
				Reason: fmt.Sprintf("not reported: a token of module %s (slot %d) hung before its serial was known, it may be this one; %s",
					res.Module, u.SlotID, unresponsiveReason(u, pol))}
		}
	}
	for _, t := range res.Tokens {
		if t.Serial == "" && failedCheck(t, p11.CheckTokenInfo) != "" {
			return Verdict{State: StateFailed, Kind: KindHardware,
				Reason: fmt.Sprintf("not reported: a token of module %s (slot %d) failed check token_info (%s) so its serial is unknown, it may be this one",
					res.Module, t.SlotID, failedCheck(t, p11.CheckTokenInfo))}
		}
	}
	for _, c := range res.Crashed {
		if c.Serial == serial {
			return Verdict{State: StateModuleError, Kind: KindOperational,
				Reason: fmt.Sprintf("module %s: %s (check %s); the other tokens were probed in a fresh worker", res.Module, c.Reason, c.Check)}
		}
	}
	for _, c := range res.Crashed {
		if c.Serial == "" {
			return Verdict{State: StateModuleError, Kind: KindOperational,
				Reason: fmt.Sprintf("not reported: a token of module %s crashed the worker before its serial was known (%s), it may be this one", res.Module, c.Reason)}
		}
	}
	if res.ModuleError != "" {
		return Verdict{State: StateModuleError, Kind: KindOperational, ModuleWide: true,
			Reason: fmt.Sprintf("module %s: %s", res.Module, res.ModuleError)}
	}
	return Verdict{State: StateMissing, Kind: KindHardware,
		Reason: fmt.Sprintf("serial %s not present in module %s (%d tokens reported)", serial, res.Module, len(res.Tokens))}
}

func unresponsiveReason(u probe.Unresponsive, pol Policy) string {
	check := u.Check
	if check == "" {
		check = "the probe"
	} else {
		check = "check " + check
	}
	if pol.ProbeTimeout > 0 {
		return fmt.Sprintf("no answer during %s before the probe deadline (probe_timeout %s)", check, pol.ProbeTimeout)
	}
	return fmt.Sprintf("no answer during %s before the probe deadline", check)
}

// finding is one reason a reported token is not healthy.
type finding struct {
	state  State
	kind   Kind
	reason string
}

// classifyToken classifies a token that reported.
func classifyToken(tok p11.Token, pol Policy) Verdict {
	var fs []finding
	for _, c := range tok.Checks {
		e, failed := checkFailure(c)
		if !failed {
			continue
		}
		reason := fmt.Sprintf("check %s failed", c.Name)
		if c.Error != "" {
			reason += ": " + e
		}
		if c.NotRun != "" {
			reason += " (result standing, not retried: " + c.NotRun + ")"
		}
		kind := KindHardware
		if p11.IsOperationalError(e) {
			kind = KindOperational
		}
		fs = append(fs, finding{StateFailed, kind, reason})
	}
	if tok.HasFlag(p11.FlagErrorState) {
		fs = append(fs, finding{StateFailed, KindHardware, "token reports error_state (it failed a self-test and is in an error state)"})
	}
	if tok.HasFlag(p11.FlagUserPINLocked) {
		fs = append(fs, finding{StateFailed, KindOperational, "user PIN is locked (user_pin_locked)"})
	}
	for _, c := range tok.Checks {
		if isSlow(c, pol) {
			fs = append(fs, finding{StateDegraded, KindHardware,
				fmt.Sprintf("check %s took %s (slow_threshold %s)", c.Name, roundDuration(c.Duration), pol.SlowThreshold)})
		}
	}
	if !tok.HasFlag(p11.FlagUserPINLocked) {
		if tok.HasFlag(p11.FlagUserPINFinalTry) {
			fs = append(fs, finding{StateDegraded, KindOperational, "user PIN has one try left (user_pin_final_try)"})
		} else if tok.HasFlag(p11.FlagUserPINCountLow) {
			fs = append(fs, finding{StateDegraded, KindOperational, "user PIN retry counter is low (user_pin_count_low)"})
		}
	}
	if len(fs) == 0 {
		return Verdict{State: StateHealthy}
	}
	state := StateDegraded
	for _, f := range fs {
		if f.state == StateFailed {
			state = StateFailed
		}
	}
	// Kind: hardware wins among the findings of the winning state, since it
	// needs the vendor; reasons list the winning state's findings first.
	kind := KindOperational
	var first, rest []string
	for _, f := range fs {
		if f.state == state {
			if f.kind == KindHardware {
				kind = KindHardware
			}
			first = append(first, f.reason)
		} else {
			rest = append(rest, f.reason)
		}
	}
	return Verdict{State: state, Kind: kind, Reason: strings.Join(append(first, rest...), "; ")}
}

// failedCheck returns the error of the named check if it failed, else "".
func failedCheck(t p11.Token, name string) string {
	for _, c := range t.Checks {
		if e, failed := checkFailure(c); c.Name == name && failed {
			return e
		}
	}
	return ""
}

// checkFailure is the one rule of what counts as a failed check: it returns
// the check's error ("failed" when it has none) and whether it counts. A
// check not attempted (NotRun) is neither a success nor a failure, unless
// its last real outcome (a standing self-test error) stands.
func checkFailure(c p11.Check) (string, bool) {
	if c.OK || (c.NotRun != "" && c.Error == "") {
		return "", false
	}
	if c.Error == "" {
		return "failed", true
	}
	return c.Error, true
}

// isSlow reports whether a check that ran and succeeded took longer than
// the slow threshold.
func isSlow(c p11.Check, pol Policy) bool {
	return c.OK && c.NotRun == "" && pol.SlowThreshold > 0 && c.Duration > pol.SlowThreshold
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d
}

// FirmwareEndOfLife reports whether a firmware version is in
// policy.EndOfLife (compared as dotted numbers, as FirmwareCompliant does).
func FirmwareEndOfLife(version string, policy config.Firmware) bool {
	for _, v := range policy.EndOfLife {
		if c, err := health.CompareVersions(version, v); err == nil && c == 0 {
			return true
		}
	}
	return false
}

// FirmwareCompliant reports whether a firmware version satisfies the fleet
// policy: not end of life, at least policy.Minimum when set, and one of
// policy.Approved when that list is set. Versions compare as dotted numbers, component by
// component, so "12.60" is newer than "12.8" and "12.6" equals "12.6.0".
// An unparseable version is not compliant when any policy is set.
func FirmwareCompliant(version string, policy config.Firmware) bool {
	if FirmwareEndOfLife(version, policy) {
		return false
	}
	if policy.Minimum != "" {
		c, err := health.CompareVersions(version, policy.Minimum)
		if err != nil || c < 0 {
			return false
		}
	}
	if len(policy.Approved) > 0 {
		for _, a := range policy.Approved {
			if c, err := health.CompareVersions(version, a); err == nil && c == 0 {
				return true
			}
		}
		return false
	}
	return true
}
