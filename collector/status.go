package collector

import (
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// State is the health of one inventory device.
type State string

// Device health states. The zero State ("") means the device's module has
// not been polled yet.
const (
	StateHealthy      State = "healthy"
	StateDegraded     State = "degraded"
	StateFailed       State = "failed"
	StateMissing      State = "missing"
	StateUnresponsive State = "unresponsive"
	StateModuleError  State = "module_error"
)

// States lists every state in the order the metrics export them.
var States = []State{StateHealthy, StateDegraded, StateFailed, StateMissing, StateUnresponsive, StateModuleError}

// Kind says who has to act on a non-healthy state.
type Kind string

// Fault kinds. Hardware faults go to the vendor; operational ones
// (PIN problems, library or configuration trouble) stay in house.
const (
	KindNone        Kind = ""
	KindHardware    Kind = "hardware"
	KindOperational Kind = "operational"
)

// DeviceStatus is the last known health of one inventory device.
type DeviceStatus struct {
	// Device is the inventory name.
	Device string
	// Serial is the inventory serial the device is matched by.
	Serial string
	// Module is the inventory module the device belongs to.
	Module string
	// State is the current health; "" until the module was polled once.
	State State
	// Kind is hardware or operational for a non-healthy state, "" when healthy.
	Kind Kind
	// Reason explains the state for a human: which check, which error, how slow.
	Reason string
	// Token is the last token information seen for this serial (possibly from
	// an earlier poll when the token did not report this time); nil if never seen.
	Token *p11.Token
	// Reported is true when the token reported in the latest poll.
	Reported bool
	// ModuleWide is set when State is module_error for the whole module
	// (see Verdict.ModuleWide), not for this device's own token.
	ModuleWide bool
	// Checks are the checks of the latest poll (empty when not reported),
	// including the standing result of the last login_sign self-test.
	Checks []p11.Check
	// LastSuccess is the last time the device was up (see Up): it reported
	// and every check succeeded, or failed only operationally; zero if never
	// since the agent started.
	LastSuccess time.Time
	// Since is when the device entered its current state.
	Since time.Time
	// FirmwareCompliant reports whether Token.Firmware satisfies the fleet's
	// firmware policy; meaningful only when Token is not nil.
	FirmwareCompliant bool
	// Fresh is true when the latest poll ran in a fresh worker (fresh C_Initialize).
	Fresh bool
	// SelfTestAt is when the login_sign check in Checks last ran; it runs at
	// most every selftest_interval and its result stands in between.
	SelfTestAt time.Time
	// SelfTestAsked is true when the device has a PIN, so its polls ask for
	// the logged-in self-test.
	SelfTestAsked bool
	// Updated is when the latest poll of this device was classified.
	Updated time.Time
	// Inventory is the device's inventory entry (contract, environment, pool).
	Inventory config.Device
	// Findings are the typed findings of the latest poll (DeviceFindings),
	// none when healthy: what the case engine turns into faults.
	Findings []Finding
}

// Polled reports whether the device has been classified at least once.
func (d DeviceStatus) Polled() bool { return d.State != "" }

// Up reports whether the device is up: it answered the latest poll and
// every check succeeded (healthy or degraded), or the only failures are
// operational (a wrong or locked PIN: the operator's to fix, the HSM itself
// works). It is the value of hsm_up and what a pool counts as a healthy
// member; an operational finding never counts a device as down.
func (d DeviceStatus) Up() bool {
	return d.State == StateHealthy || d.State == StateDegraded || (d.State == StateFailed && d.Kind == KindOperational)
}

// ReadSlot returns the slot and label the device's token was read in by
// the latest poll, when it answered C_GetTokenInfo itself (so its serial
// was read there, not inferred from an earlier poll); ok is false otherwise.
func (d DeviceStatus) ReadSlot() (slot uint, label string, ok bool) {
	if !d.Reported || d.Token == nil || !tokenInfoOK(*d.Token) {
		return 0, "", false
	}
	return d.Token.SlotID, d.Token.Label, true
}

// ModuleStatus is the outcome of the latest poll of one module.
type ModuleStatus struct {
	// Name is the inventory module name.
	Name string
	// Polled is false until the module's first poll finished.
	Polled bool
	// Start and Duration time the latest poll.
	Start    time.Time
	Duration time.Duration
	// Fresh is true when the latest poll ran C_Initialize in a new worker.
	Fresh bool
	// Error is the module error of the latest poll (library would not load or
	// initialise, worker crashed), "" if none.
	Error string
	// Unresponsive counts tokens that were in flight when the deadline hit.
	Unresponsive int
	// Crashed counts tokens whose call crashed the worker.
	Crashed int
	// Tokens counts the tokens that reported.
	Tokens int
	// Unexpected counts reported tokens whose serial is not in the inventory.
	Unexpected int
}

// Success reports whether the latest poll completed without a module error
// and without a hung token. It is the value of hsm_module_probe_success.
func (m ModuleStatus) Success() bool {
	return m.Polled && m.Error == "" && m.Unresponsive == 0 && m.Crashed == 0
}

// UnexpectedToken is an initialised token whose serial is not in the
// inventory; it may be a replacement unit waiting to be registered.
type UnexpectedToken struct {
	Module string
	Token  p11.Token
	// Since is when the token was first seen in this run of the agent.
	Since time.Time
}

// Snapshot is everything the collector knows after a poll. A Snapshot is
// shared between readers and must be treated as read-only.
type Snapshot struct {
	// Time is when this snapshot was published (zero before any poll).
	Time time.Time
	// Ready is true once every module has been polled at least once.
	Ready bool
	// Polled names the modules whose new results produced this snapshot.
	Polled []string
	// Devices are the inventory devices in inventory order.
	Devices []DeviceStatus
	// Modules are the inventory modules in inventory order.
	Modules []ModuleStatus
	// Unexpected are tokens not in the inventory, by module then slot order.
	Unexpected []UnexpectedToken
	// PollInterval is the configured poll_interval, and StallAfter how long
	// a module may go without a completed poll before its loop counts as
	// stalled (Stalled).
	PollInterval, StallAfter time.Duration
}

// StallAfter is how long a module may go without a completed poll before
// its poll loop counts as stalled: 3 x poll_interval, or, when probes may
// legitimately take longer (a hung token is killed only at probe_timeout,
// a poll takes at most about 3 x probe_timeout), one interval plus that.
func StallAfter(pollInterval, probeTimeout time.Duration) time.Duration {
	return max(3*pollInterval, pollInterval+3*probeTimeout)
}

// LastPoll is when the module's latest poll completed; zero before the first.
func (m ModuleStatus) LastPoll() time.Time {
	if !m.Polled {
		return time.Time{}
	}
	return m.Start.Add(m.Duration)
}

// Stalled returns the first module whose latest completed poll is older
// than StallAfter at now (its poll loop is stuck: a scrape would show stale
// data as fresh); ok is false when every polled module is fresh. A module
// not polled yet is not stalled (readiness covers the first poll).
func (s Snapshot) Stalled(now time.Time) (m ModuleStatus, ok bool) {
	for _, m := range s.Modules {
		if m.Polled && s.StallAfter > 0 && now.Sub(m.LastPoll()) > s.StallAfter {
			return m, true
		}
	}
	return ModuleStatus{}, false
}

// Device returns the status of the named inventory device.
func (s Snapshot) Device(name string) (DeviceStatus, bool) {
	for _, d := range s.Devices {
		if d.Device == name {
			return d, true
		}
	}
	return DeviceStatus{}, false
}

// Module returns the status of the named module.
func (s Snapshot) Module(name string) (ModuleStatus, bool) {
	for _, m := range s.Modules {
		if m.Name == name {
			return m, true
		}
	}
	return ModuleStatus{}, false
}
