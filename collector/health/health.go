// Package health is the collector's verdict on the inventory as plain data:
// the typed findings of each device (kind, class, reason) and the device
// facts the case engine needs. It imports no PKCS#11 code, so what consumes
// findings (package rma) neither re-derives them from checks and flags nor
// links the probe.
package health

import (
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// Kind says who acts on a finding.
type Kind string

// Finding kinds.
const (
	KindHardware    Kind = "hardware"    // the vendor's
	KindOperational Kind = "operational" // in house: PIN, library, configuration
	KindFirmware    Kind = "firmware"    // the vendor's (an update)
)

// Finding classes, by kind.
const (
	// Hardware.
	ClassMissing        = "missing"         // the serial is not among the module's tokens
	ClassFailed         = "failed"          // a check failed with a non-PIN error, or the token is in error_state
	ClassUnresponsive   = "unresponsive"    // no answer before the probe deadline
	ClassSelfTestFailed = "selftest_failed" // login_sign failed with a non-PIN error (the other checks pass)
	ClassSlow           = "slow"            // a check slower than slow_threshold
	// Operational.
	ClassPINLocked    = "pin_locked"    // the token reports user_pin_locked
	ClassLoginRefused = "login_refused" // login_sign refused the agent's PIN (CKR_PIN_INCORRECT, ...)
	ClassModuleError  = "module_error"  // the library would not load or initialise, or the worker crashed
	ClassPINCountLow  = "pin_count_low" // user_pin_count_low or user_pin_final_try
	// Firmware.
	ClassBelowMinimum = "below_minimum" // below firmware.minimum
	ClassNotApproved  = "not_approved"  // not in firmware.approved
	ClassEndOfLife    = "end_of_life"   // in firmware.end_of_life: the vendor no longer services it
)

// StateClasses are the classes a poll can tell present or absent even
// when the token did not report; every other class needs the token's report.
var StateClasses = map[string]bool{ClassMissing: true, ClassUnresponsive: true, ClassModuleError: true}

// Finding is one reason a device is not healthy in one poll: at most one
// hardware, one operational and one firmware finding per device.
type Finding struct {
	Kind  Kind
	Class string
	// Reason is what is wrong, for a summary ("missing from module soft").
	Reason string
	// Observed is what the poll showed, in detail, for a description.
	Observed string
}

// Token is what a device's token last said about itself.
type Token struct {
	Model, Manufacturer, Firmware, Hardware, Label string
	// Initialized and UserPINInitialized are the token flags
	// token_initialized and user_pin_initialized.
	Initialized, UserPINInitialized bool
}

// SelfTest is the state of a device's logged-in self-test (login_sign).
type SelfTest string

// Self-test states: none when the device has no PIN (no self-test runs),
// pending while it has not run on this token yet.
const (
	SelfTestNone    SelfTest = ""
	SelfTestPending SelfTest = "pending"
	SelfTestPassed  SelfTest = "passed"
	SelfTestFailed  SelfTest = "failed"
)

// Slot is where a device's token was read.
type Slot struct {
	ID    uint
	Label string
}

// Device is one inventory device as the latest poll of its module left it.
type Device struct {
	Device, Serial, Module string
	// Inventory is the device's inventory entry.
	Inventory config.Device
	// Polled is false until the device's module was polled once.
	Polled bool
	// Up is the collector's hsm_up: what a pool counts as a healthy member.
	Up bool
	// ModuleWide is set when the device's state is its module's (the
	// library failed before any token answered): the poll says nothing
	// about the device itself.
	ModuleWide bool
	// Reported is true when the token reported in this poll.
	Reported bool
	// Reason is the collector's explanation of the device's state.
	Reason string
	// Token is the last token information seen (possibly from an earlier
	// poll); nil if never seen.
	Token *Token
	// ReadSlot is where this poll read the token's serial itself; nil when
	// it did not.
	ReadSlot *Slot
	// LastSuccess is the last time the device was up; zero if never.
	LastSuccess time.Time
	// Updated is when the poll was classified; Fresh is true when it ran in
	// a fresh worker (fresh C_Initialize).
	Updated time.Time
	Fresh   bool
	// Findings are the device's findings in this poll, none when healthy.
	Findings []Finding
	// SelfTest is the state of the logged-in self-test, SelfTestError the
	// error of a failed one.
	SelfTest      SelfTest
	SelfTestError string
}

// Unexpected is an initialised token not in the inventory: maybe a
// replacement unit.
type Unexpected struct {
	Module, Serial, Label, Model, Firmware string
	SlotID                                 uint
	// Since is when it was first seen in this run of the agent.
	Since time.Time
}

// Module is the latest poll of one module.
type Module struct {
	Name     string
	Start    time.Time
	Duration time.Duration
	Fresh    bool
}

// Poll is what one published snapshot tells the case engine.
type Poll struct {
	// Time is when the snapshot was published.
	Time time.Time
	// Polled names the modules whose new results produced the snapshot.
	Polled []string
	// Devices are the inventory devices in inventory order.
	Devices []Device
	// Modules are the inventory modules in inventory order.
	Modules []Module
	// Unexpected are the initialised tokens not in the inventory (a
	// device's followed serial is in it), by module then slot order.
	Unexpected []Unexpected
}

// Module returns the latest poll of the named module.
func (p Poll) Module(name string) (Module, bool) {
	for _, m := range p.Modules {
		if m.Name == name {
			return m, true
		}
	}
	return Module{}, false
}
