package rma

import (
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/collector/p11"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func testConfig() *config.Config {
	c := config.Default()
	c.Modules = []config.Module{{Name: "soft", Library: "/usr/lib/softhsm/libsofthsm2.so"}}
	c.Pools = []config.Pool{{Name: "payments", MinHealthy: 1}}
	c.Devices = []config.Device{{Name: "hsm-a", Serial: "S1", Module: "soft", Environment: config.EnvProduction, Pool: "payments",
		Contract: config.Contract{ID: "C-1", Tier: config.TierPremiumPlus, Region: config.RegionEMEA, Expires: config.Date{Time: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)}}}}
	c.Firmware = config.Firmware{Minimum: "2.6", Approved: []string{"2.6", "2.8"}}
	return c
}

func okChecks() []p11.Check {
	return []p11.Check{
		{Name: p11.CheckTokenInfo, OK: true, Duration: time.Millisecond},
		{Name: p11.CheckSessionOpen, OK: true, Duration: time.Millisecond},
		{Name: p11.CheckRandom, OK: true, Duration: time.Millisecond},
		{Name: p11.CheckLoginSign, OK: true, Duration: time.Millisecond},
	}
}

// reported is a device whose token reported with the given checks and flags.
func reported(state collector.State, checks []p11.Check, flags ...string) collector.DeviceStatus {
	c := testConfig()
	return collector.DeviceStatus{Device: "hsm-a", Serial: "S1", Module: "soft", State: state, Reason: "reason from the collector",
		Token: &p11.Token{Serial: "S1", Label: "pay-1", Model: "SoftHSM v2", Manufacturer: "SoftHSM project", Firmware: "2.6", Hardware: "2.6",
			Flags: append([]string{p11.FlagTokenInitialized}, flags...), Checks: checks},
		Reported: true, Checks: checks, Fresh: true, Updated: t0, Inventory: c.Devices[0]}
}

// deviceFaults maps the findings the collector gives st to faults.
func deviceFaults(st collector.DeviceStatus, cfg *config.Config) Observed {
	st.Findings = collector.DeviceFindings(st, collector.PolicyFrom(cfg))
	return DeviceFaults(st.Health(), PolicyFrom(cfg))
}

func withCheck(name string, mod func(*p11.Check)) []p11.Check {
	cs := okChecks()
	for i := range cs {
		if cs[i].Name == name {
			mod(&cs[i])
		}
	}
	return cs
}

func TestDeviceFaults(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	notReported := func(state collector.State) collector.DeviceStatus {
		d := reported(state, nil)
		d.Reported, d.Checks = false, nil // Token stays: as last seen
		return d
	}
	oldFirmware := reported(collector.StateHealthy, okChecks())
	oldFirmware.Token.Firmware = "2.5"
	unapproved := reported(collector.StateHealthy, okChecks())
	unapproved.Token.Firmware = "2.7"
	slowAndLow := reported(collector.StateDegraded, withCheck(p11.CheckRandom, func(c *p11.Check) { c.Duration = 3 * time.Second }), p11.FlagUserPINCountLow)
	neverSeen := notReported(collector.StateMissing)
	neverSeen.Token = nil
	// C_GetTokenInfo failed on a token never read before: its firmware is
	// unknown, which is no firmware fault.
	unreadable := reported(collector.StateFailed, withCheck(p11.CheckTokenInfo, func(c *p11.Check) { c.OK, c.Error = false, "CKR_DEVICE_ERROR" }))
	unreadable.Token.Firmware = ""

	type want struct {
		kind           Kind
		class, summary string
	}
	for _, tc := range []struct {
		name      string
		st        collector.DeviceStatus
		want      []want
		tokenSeen bool
	}{
		{"healthy", reported(collector.StateHealthy, okChecks()), nil, true},
		{"missing", notReported(collector.StateMissing), []want{{KindHardware, ClassMissing, "missing from module soft"}}, false},
		{"missing, never seen", neverSeen, []want{{KindHardware, ClassMissing, "missing"}}, false},
		{"unresponsive", notReported(collector.StateUnresponsive), []want{{KindHardware, ClassUnresponsive, "unresponsive"}}, false},
		{"module error", notReported(collector.StateModuleError), []want{{KindOperational, ClassModuleError, "module soft error"}}, false},
		{"failed before its serial was known", notReported(collector.StateFailed), []want{{KindHardware, ClassFailed, "failed"}}, false},
		{"failed: device error on random", reported(collector.StateFailed, withCheck(p11.CheckRandom, func(c *p11.Check) { c.OK, c.Error = false, "CKR_DEVICE_ERROR" })),
			[]want{{KindHardware, ClassFailed, "failed: random CKR_DEVICE_ERROR"}}, true},
		{"failed: error_state flag", reported(collector.StateFailed, okChecks(), p11.FlagErrorState),
			[]want{{KindHardware, ClassFailed, "error_state"}}, true},
		{"failed wins over a self-test failure", reported(collector.StateFailed, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.Error = false, "CKR_DEVICE_ERROR" }), p11.FlagErrorState),
			[]want{{KindHardware, ClassFailed, "error_state"}}, true},
		{"self-test failed: login_sign device error", reported(collector.StateFailed, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.Error = false, "CKR_FUNCTION_FAILED" })),
			[]want{{KindHardware, ClassSelfTestFailed, "crypto self-test failed: login_sign CKR_FUNCTION_FAILED"}}, true},
		{"self-test failure standing (not retried)", reported(collector.StateFailed, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.Error, c.NotRun = false, "CKR_DEVICE_ERROR", "selftest_interval" })),
			[]want{{KindHardware, ClassSelfTestFailed, "self-test failed"}}, true},
		{"login_sign not run without a standing error is no fault", reported(collector.StateHealthy, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.NotRun = false, "no pin_file" })),
			nil, true},
		{"login refused: CKR_PIN_INCORRECT", reported(collector.StateFailed, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.Error = false, "CKR_PIN_INCORRECT" })),
			[]want{{KindOperational, ClassLoginRefused, "login refused: login_sign CKR_PIN_INCORRECT"}}, true},
		{"PIN locked wins over login refused", reported(collector.StateFailed, withCheck(p11.CheckLoginSign, func(c *p11.Check) { c.OK, c.Error = false, "CKR_PIN_LOCKED" }), p11.FlagUserPINLocked),
			[]want{{KindOperational, ClassPINLocked, "user PIN locked"}}, true},
		{"PIN count low", reported(collector.StateDegraded, okChecks(), p11.FlagUserPINCountLow),
			[]want{{KindOperational, ClassPINCountLow, "retry counter low"}}, true},
		{"PIN final try", reported(collector.StateDegraded, okChecks(), p11.FlagUserPINFinalTry),
			[]want{{KindOperational, ClassPINCountLow, "one try left"}}, true},
		{"slow and PIN count low: two faults", slowAndLow,
			[]want{{KindHardware, ClassSlow, "slow: check random took 3s (slow_threshold 2s)"}, {KindOperational, ClassPINCountLow, "retry counter low"}}, true},
		{"token info unreadable: one hardware fault, no firmware verdict", unreadable,
			[]want{{KindHardware, ClassFailed, "failed: token_info CKR_DEVICE_ERROR"}}, true},
		{"firmware below minimum", oldFirmware, []want{{KindFirmware, ClassBelowMinimum, "firmware 2.5 below the approved minimum 2.6"}}, true},
		{"firmware not approved", unapproved, []want{{KindFirmware, ClassNotApproved, "firmware 2.7 not approved"}}, true},
	} {
		o := deviceFaults(tc.st, cfg)
		if o.TokenReported != tc.tokenSeen {
			t.Errorf("%s: TokenReported = %v, want %v", tc.name, o.TokenReported, tc.tokenSeen)
		}
		if len(o.Faults) != len(tc.want) {
			t.Errorf("%s: got %d faults %+v, want %+v", tc.name, len(o.Faults), o.Faults, tc.want)
			continue
		}
		for i, w := range tc.want {
			f := o.Faults[i]
			if f.Kind != w.kind || f.Class != w.class || !strings.Contains(f.Summary, w.summary) {
				t.Errorf("%s: fault %d = %s/%s %q, want %s/%s with %q", tc.name, i, f.Kind, f.Class, f.Summary, w.kind, w.class, w.summary)
			}
			if f.Serial != "S1" || f.Device != "hsm-a" || !f.ObservedAt.Equal(t0) || f.DedupKey() != "S1/"+string(w.kind)+"/"+w.class {
				t.Errorf("%s: identity %q %q %v %q", tc.name, f.Serial, f.Device, f.ObservedAt, f.DedupKey())
			}
			if !strings.HasPrefix(f.Summary, "hsm-a (serial S1): ") {
				t.Errorf("%s: summary %q must name the device and serial", tc.name, f.Summary)
			}
			// Section 5: serial, model, firmware and hardware versions,
			// library, environment, contract, what was observed.
			for _, part := range []string{"serial S1", "Environment: production; pool payments (min_healthy 1)",
				"library /usr/lib/softhsm/libsofthsm2.so", "Contract: C-1, tier premium-plus, region emea, expires 2027-06-30", "Observed: "} {
				if !strings.Contains(f.Description, part) {
					t.Errorf("%s: description lacks %q:\n%s", tc.name, part, f.Description)
				}
			}
			if tc.st.Token != nil && !strings.Contains(f.Description, "model SoftHSM v2 by SoftHSM project, firmware ") {
				t.Errorf("%s: description lacks model and versions:\n%s", tc.name, f.Description)
			}
		}
	}
	// The observed reason of the collector is quoted.
	o := deviceFaults(notReported(collector.StateMissing), cfg)
	if !strings.Contains(o.Faults[0].Description, "Observed: reason from the collector") ||
		!strings.Contains(o.Faults[0].Description, "(as last reported)") {
		t.Errorf("missing device description:\n%s", o.Faults[0].Description)
	}
	if o := deviceFaults(neverSeen, cfg); !strings.Contains(o.Faults[0].Description, "model and versions unknown") {
		t.Errorf("never-seen device description:\n%s", o.Faults[0].Description)
	}
}

func TestObservedSees(t *testing.T) {
	t.Parallel()
	o := Observed{TokenReported: false}
	for class, want := range map[string]bool{ClassMissing: true, ClassUnresponsive: true, ClassModuleError: true,
		ClassFailed: false, ClassPINCountLow: false, ClassBelowMinimum: false, ClassSlow: false} {
		if o.Sees(class) != want {
			t.Errorf("a poll without the token Sees(%s) = %v, want %v", class, !want, want)
		}
	}
	if !(Observed{TokenReported: true}).Sees(ClassBelowMinimum) {
		t.Error("a poll with the token must see firmware faults")
	}
}

func TestContractFault(t *testing.T) {
	t.Parallel()
	dev := testConfig().Devices[0]
	dev.Contract.Expires = config.Date{Time: time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)}
	day := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		now   time.Time
		class string
		text  string
	}{
		{day(2026, 4, 30, 12), "", ""},                              // 61 days left
		{day(2026, 5, 1, 0), ClassExpiring, "within 60 days"},       // 60 days left
		{day(2026, 5, 31, 23), ClassExpiring, "within 30 days"},     // 30 days
		{day(2026, 6, 23, 0), ClassExpiring, "within 7 days"},       // 7 days
		{day(2026, 6, 30, 23), ClassExpiring, "within 7 days"},      // the expiry day is still covered
		{day(2026, 7, 1, 0), ClassExpired, "expired on 2026-06-30"}, // the day after
	} {
		f, ok := ContractFault(dev, tc.now)
		if ok != (tc.class != "") || f.Class != tc.class || !strings.Contains(f.Summary, tc.text) {
			t.Errorf("at %s: got %v %q %q, want %q with %q", tc.now, ok, f.Class, f.Summary, tc.class, tc.text)
			continue
		}
		if ok && (f.Kind != KindContract || f.DedupKey() != "S1/contract/"+tc.class || !strings.Contains(f.Description, "Contract: C-1")) {
			t.Errorf("at %s: fault %+v", tc.now, f)
		}
	}
	// The description changes only when a threshold is crossed.
	a, _ := ContractFault(dev, day(2026, 5, 20, 0))
	b, _ := ContractFault(dev, day(2026, 5, 25, 0))
	if a.Description != b.Description {
		t.Errorf("description changed within a threshold:\n%s\n%s", a.Description, b.Description)
	}
	if st := Contract(dev, day(2026, 7, 1, 0)); st.Active || st.Reason != "contract C-1 expired on 2026-06-30: no vendor case, no RMA" {
		t.Errorf("expired contract status %+v", st)
	}
	none := dev
	none.Contract = config.Contract{}
	if _, ok := ContractFault(none, t0); ok {
		t.Error("a device without a contract has no contract fault")
	}
	if st := Contract(none, t0); st.Active || !strings.Contains(st.Reason, "no support contract") {
		t.Errorf("no contract status %+v", st)
	}
}
