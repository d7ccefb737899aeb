package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// okChecks returns the three unauthenticated checks, all fine and fast.
func okChecks() []p11.Check {
	return []p11.Check{
		{Name: p11.CheckTokenInfo, OK: true, Duration: 30 * time.Microsecond},
		{Name: p11.CheckSessionOpen, OK: true, Duration: 200 * time.Microsecond},
		{Name: p11.CheckRandom, OK: true, Duration: time.Millisecond},
	}
}

func tok(serial string, mod func(*p11.Token)) p11.Token {
	t := p11.Token{
		Serial: serial, Label: "lbl-" + serial, Model: "SoftHSM v2", Manufacturer: "SoftHSM project",
		Firmware: "2.6", Hardware: "2.6",
		Flags:  []string{p11.FlagTokenInitialized, p11.FlagLoginRequired},
		Checks: okChecks(),
	}
	if mod != nil {
		mod(&t)
	}
	return t
}

func TestClassify(t *testing.T) {
	t.Parallel()
	pol := Policy{SlowThreshold: 2 * time.Second, ProbeTimeout: 10 * time.Second}
	const serial = "aaaa0001"
	other := tok("bbbb0002", nil)

	tests := []struct {
		name     string
		res      probe.Result
		state    State
		kind     Kind
		reason   []string // substrings the reason must contain
		reported bool
		// moduleWide: the verdict is the module's, not the device's.
		moduleWide bool
	}{
		{
			name:     "healthy",
			res:      probe.Result{Module: "m", Tokens: []p11.Token{other, tok(serial, nil)}},
			state:    StateHealthy,
			reported: true,
		},
		{
			name: "matched by serial, not slot or label",
			res: probe.Result{Module: "m", Tokens: []p11.Token{
				tok("cccc0003", func(t *p11.Token) { t.Label = "lbl-" + serial; t.SlotID = 1 }),
			}},
			state:  StateMissing,
			kind:   KindHardware,
			reason: []string{"serial aaaa0001 not present in module m", "1 tokens reported"},
		},
		{
			name: "degraded: slow check",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks[2].Duration = 2500 * time.Millisecond
			})}},
			state:    StateDegraded,
			kind:     KindHardware,
			reason:   []string{"check random took 2.5s (slow_threshold 2s)"},
			reported: true,
		},
		{
			name: "exactly the threshold is not slow",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks[2].Duration = 2 * time.Second
			})}},
			state:    StateHealthy,
			reported: true,
		},
		{
			name: "degraded: user PIN count low",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINCountLow)
			})}},
			state:    StateDegraded,
			kind:     KindOperational,
			reason:   []string{"user PIN retry counter is low (user_pin_count_low)"},
			reported: true,
		},
		{
			name: "degraded: user PIN final try",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINCountLow, p11.FlagUserPINFinalTry)
			})}},
			state:    StateDegraded,
			kind:     KindOperational,
			reason:   []string{"user_pin_final_try"},
			reported: true,
		},
		{
			name: "degraded: slow and PIN count low, hardware wins the kind",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINCountLow)
				t.Checks[1].Duration = 3 * time.Second
			})}},
			state:    StateDegraded,
			kind:     KindHardware,
			reason:   []string{"check session_open took 3s", "user_pin_count_low"},
			reported: true,
		},
		{
			name: "failed: device error",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks[2] = p11.Check{Name: p11.CheckRandom, Error: "CKR_DEVICE_ERROR", Duration: time.Millisecond}
			})}},
			state:    StateFailed,
			kind:     KindHardware,
			reason:   []string{"check random failed: CKR_DEVICE_ERROR"},
			reported: true,
		},
		{
			name: "failed beats slow, both reasons kept",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks[0].Duration = 5 * time.Second
				t.Checks[1] = p11.Check{Name: p11.CheckSessionOpen, Error: "CKR_DEVICE_MEMORY"}
			})}},
			state:    StateFailed,
			kind:     KindHardware,
			reason:   []string{"check session_open failed: CKR_DEVICE_MEMORY; check token_info took 5s"},
			reported: true,
		},
		{
			name: "failed: user PIN locked is operational",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINLocked, p11.FlagUserPINCountLow)
			})}},
			state:    StateFailed,
			kind:     KindOperational,
			reason:   []string{"user PIN is locked (user_pin_locked)"},
			reported: true,
		},
		{
			name: "failed: login refused is operational",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks = append(t.Checks, p11.Check{Name: p11.CheckLoginSign, Error: "CKR_PIN_INCORRECT"})
			})}},
			state:    StateFailed,
			kind:     KindOperational,
			reason:   []string{"check login_sign failed: CKR_PIN_INCORRECT"},
			reported: true,
		},
		{
			name: "failed: PIN locked and device error is hardware",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINLocked)
				t.Checks[2] = p11.Check{Name: p11.CheckRandom, Error: "CKR_DEVICE_ERROR"}
			})}},
			state:    StateFailed,
			kind:     KindHardware,
			reason:   []string{"CKR_DEVICE_ERROR", "user_pin_locked"},
			reported: true,
		},
		{
			name: "failed: token in error state",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagErrorState)
			})}},
			state:    StateFailed,
			kind:     KindHardware,
			reason:   []string{"error_state"},
			reported: true,
		},
		{
			name: "a check not attempted is no failure",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Flags = append(t.Flags, p11.FlagUserPINFinalTry)
				t.Checks = append(t.Checks, p11.Check{Name: p11.CheckLoginSign, NotRun: "token reports user_pin_final_try; never logging in"})
			})}},
			state:    StateDegraded, // from the flag only
			kind:     KindOperational,
			reason:   []string{"user_pin_final_try"},
			reported: true,
		},
		{
			name: "a standing refused PIN is a failure",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, func(t *p11.Token) {
				t.Checks = append(t.Checks, p11.Check{Name: p11.CheckLoginSign, Error: "CKR_PIN_INCORRECT",
					NotRun: "the token refused the PIN in /etc/pins/a; not tried again until that file changes"})
			})}},
			state:    StateFailed,
			kind:     KindOperational,
			reason:   []string{"check login_sign failed: CKR_PIN_INCORRECT (result standing, not retried: the token refused the PIN"},
			reported: true,
		},
		{
			name: "a token without serial failing token_info covers the unreported devices",
			res: probe.Result{Module: "m", Tokens: []p11.Token{other,
				{SlotID: 9, Checks: []p11.Check{{Name: p11.CheckTokenInfo, Error: "CKR_DEVICE_ERROR"}}}}},
			state:  StateFailed,
			kind:   KindHardware,
			reason: []string{"slot 9", "token_info (CKR_DEVICE_ERROR)"},
		},
		{
			name:   "missing",
			res:    probe.Result{Module: "m", Tokens: []p11.Token{other}},
			state:  StateMissing,
			kind:   KindHardware,
			reason: []string{"serial aaaa0001 not present in module m"},
		},
		{
			name:   "missing from an empty module",
			res:    probe.Result{Module: "m"},
			state:  StateMissing,
			kind:   KindHardware,
			reason: []string{"0 tokens reported"},
		},
		{
			name: "unresponsive: in flight by serial",
			res: probe.Result{Module: "m", Tokens: []p11.Token{other},
				Unresponsive: []probe.Unresponsive{{SlotID: 7, Serial: serial, Check: p11.CheckRandom}}},
			state:  StateUnresponsive,
			kind:   KindHardware,
			reason: []string{"no answer during check random", "probe_timeout 10s"},
		},
		{
			name: "unresponsive by serial wins over a module error",
			res: probe.Result{Module: "m", ModuleError: "worker killed at the deadline",
				Unresponsive: []probe.Unresponsive{{Serial: serial, Check: p11.CheckSessionOpen}}},
			state:  StateUnresponsive,
			kind:   KindHardware,
			reason: []string{"check session_open"},
		},
		{
			name: "unresponsive: a hang without serial covers the unreported devices",
			res: probe.Result{Module: "m", Tokens: []p11.Token{other},
				Unresponsive: []probe.Unresponsive{{SlotID: 3, Check: p11.CheckTokenInfo}}},
			state:  StateUnresponsive,
			kind:   KindHardware,
			reason: []string{"hung before its serial was known", "slot 3"},
		},
		{
			name: "a hang of another serial does not cover this device",
			res: probe.Result{Module: "m", Tokens: []p11.Token{other},
				Unresponsive: []probe.Unresponsive{{Serial: "dddd0004", Check: p11.CheckRandom}}},
			state: StateMissing,
			kind:  KindHardware,
		},
		{
			name: "a reported token is classified even when another hung without serial",
			res: probe.Result{Module: "m", Tokens: []p11.Token{tok(serial, nil)},
				Unresponsive: []probe.Unresponsive{{SlotID: 3}}},
			state:    StateHealthy,
			reported: true,
		},
		{
			name:       "module error",
			res:        probe.Result{Module: "m", ModuleError: "C_Initialize: CKR_GENERAL_ERROR"},
			state:      StateModuleError,
			kind:       KindOperational,
			reason:     []string{"module m: C_Initialize: CKR_GENERAL_ERROR"},
			moduleWide: true,
		},
		{
			name: "module error after the token reported keeps the token's result",
			res: probe.Result{Module: "m", ModuleError: "worker crashed (signal: segmentation fault)",
				Tokens: []p11.Token{tok(serial, nil)}},
			state:    StateHealthy,
			reported: true,
		},
		{
			name: "module error (crash) before the token reported",
			res: probe.Result{Module: "m", ModuleError: "worker crashed (signal: segmentation fault)",
				Tokens: []p11.Token{other}},
			state:      StateModuleError,
			kind:       KindOperational,
			reason:     []string{"worker crashed"},
			moduleWide: true,
		},
		{
			name: "a token that crashed the worker is this device's own fault",
			res: probe.Result{Module: "m", Tokens: []p11.Token{other},
				Crashed: []probe.Crashed{{SlotID: 2, Serial: serial, Check: p11.CheckTokenInfo, Reason: "SIGSEGV in C_GetTokenInfo on slot 2"}}},
			state:  StateModuleError,
			kind:   KindOperational,
			reason: []string{"SIGSEGV in C_GetTokenInfo on slot 2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := Classify(serial, tc.res, pol)
			if v.State != tc.state || v.Kind != tc.kind {
				t.Fatalf("Classify = %s/%q (%s), want %s/%q", v.State, v.Kind, v.Reason, tc.state, tc.kind)
			}
			if tc.state == StateHealthy && v.Reason != "" {
				t.Errorf("healthy with reason %q", v.Reason)
			}
			if tc.state != StateHealthy && v.Reason == "" {
				t.Errorf("%s without a reason", v.State)
			}
			for _, want := range tc.reason {
				if !strings.Contains(v.Reason, want) {
					t.Errorf("reason %q does not contain %q", v.Reason, want)
				}
			}
			if (v.Token != nil) != tc.reported {
				t.Fatalf("token reported = %v, want %v", v.Token != nil, tc.reported)
			}
			if v.ModuleWide != tc.moduleWide {
				t.Errorf("ModuleWide = %v, want %v", v.ModuleWide, tc.moduleWide)
			}
			if v.Token != nil && v.Token.Serial != serial {
				t.Errorf("token serial %q, want %q", v.Token.Serial, serial)
			}
		})
	}
}

func TestClassifySlowThresholdZeroDisablesSlow(t *testing.T) {
	t.Parallel()
	res := probe.Result{Tokens: []p11.Token{tok("s", func(t *p11.Token) { t.Checks[0].Duration = time.Hour })}}
	if v := Classify("s", res, Policy{}); v.State != StateHealthy {
		t.Fatalf("state %s (%s), want healthy", v.State, v.Reason)
	}
}

func TestFirmwareCompliant(t *testing.T) {
	t.Parallel()
	min := config.Firmware{Minimum: "12.60"}
	both := config.Firmware{Minimum: "12.60", Approved: []string{"12.60", "12.80"}}
	approved := config.Firmware{Approved: []string{"12.60", "12.80"}}
	tests := []struct {
		fw     string
		policy config.Firmware
		want   bool
	}{
		{"12.50", config.Firmware{}, true},
		{"garbage", config.Firmware{}, true},
		{"12.60", min, true},
		{"12.61", min, true},
		{"13.0", min, true},
		{"12.50", min, false},
		{"12.8", min, false}, // 8 < 60: per component, not decimal
		{"12.100", min, true},
		{"11.99", min, false},
		{"12.60.0", min, true},
		{"", min, false},
		{"12.x", min, false},
		{"12.60", both, true},
		{"12.80", both, true},
		{"12.70", both, false}, // above minimum but not approved
		{"12.50", both, false},
		{"12.80", approved, true},
		{"12.81", approved, false},
		{"12.60.0", approved, true},
		{"12.60", config.Firmware{Minimum: "12.0", EndOfLife: []string{"12.60.0"}}, false}, // end of life: not serviced
		{"12.61", config.Firmware{Minimum: "12.0", EndOfLife: []string{"12.60"}}, true},
	}
	for _, tc := range tests {
		if got := FirmwareCompliant(tc.fw, tc.policy); got != tc.want {
			t.Errorf("FirmwareCompliant(%q, %+v) = %v, want %v", tc.fw, tc.policy, got, tc.want)
		}
	}
}

func TestFirmwareFindingEndOfLifeFirst(t *testing.T) {
	t.Parallel()
	fw := config.Firmware{Minimum: "13.0", EndOfLife: []string{"12.60"}}
	f, ok := firmwareFinding(p11.Token{Firmware: "12.60"}, fw)
	if !ok || f.Class != health.ClassEndOfLife || f.Kind != health.KindFirmware || !strings.Contains(f.Observed, "firmware.end_of_life") {
		t.Errorf("finding %+v, %v; want end_of_life (it wins over below_minimum)", f, ok)
	}
	if f, ok := firmwareFinding(p11.Token{Firmware: "12.50"}, fw); !ok || f.Class != health.ClassBelowMinimum {
		t.Errorf("finding %+v, %v; want below_minimum", f, ok)
	}
}

func TestHistoryBounds(t *testing.T) {
	t.Parallel()
	var h history
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	// 300 failures, then 150 healthy polls.
	for i := range 300 {
		h.add(Observation{Time: at(i), State: StateFailed})
	}
	for i := 300; i < 450; i++ {
		h.add(Observation{Time: at(i), State: StateHealthy})
	}
	got := h.list()
	if want := FaultObservations + RecentObservations; len(got) != want {
		t.Fatalf("history holds %d observations, want %d", len(got), want)
	}
	// Oldest kept failure is number 100 (the last 200 of 300); then the last 100 healthy.
	if !got[0].Time.Equal(at(100)) || got[0].State != StateFailed {
		t.Errorf("oldest kept = %v %s, want %v failed", got[0].Time, got[0].State, at(100))
	}
	if !got[len(got)-1].Time.Equal(at(449)) {
		t.Errorf("newest = %v, want %v", got[len(got)-1].Time, at(449))
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Time.After(got[i-1].Time) {
			t.Fatalf("history not in order or duplicated at %d: %v then %v", i, got[i-1].Time, got[i].Time)
		}
	}

	// Recent failures sit in both buffers and are listed once.
	var h2 history
	for i := range 10 {
		st := StateHealthy
		if i%2 == 0 {
			st = StateMissing
		}
		h2.add(Observation{Time: at(i), State: st})
	}
	if got := h2.list(); len(got) != 10 {
		t.Fatalf("history of 10 observations lists %d", len(got))
	}
}
