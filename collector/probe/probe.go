// Package probe is the parent side of probe isolation: it runs one
// `hsm-agent probe-worker` child per module, keeps it warm between polls,
// enforces the probe deadline, kills hung or crashed workers and re-probes
// the tokens a hung one did not reach. The daemon never loads a PKCS#11
// library itself; everything it knows about tokens arrives here as JSON.
package probe

import (
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// Options configure the prober of one module.
type Options struct {
	Module  string            // inventory module name
	Library string            // path of the PKCS#11 library
	Env     map[string]string // extra environment of the worker
	// Command starts a worker; default {os.Executable(), "probe-worker"}.
	// The prober appends "--library PATH --mode probe|selftest". The worker's
	// environment is os.Environ() plus Env.
	Command []string
	// Timeout is the deadline of one poll (probe_timeout); default 10s. A
	// poll with hung tokens may take up to twice this (see Prober).
	Timeout time.Duration
	// ReinitInterval forces a fresh worker (fresh C_Initialize) this often;
	// default 5m.
	ReinitInterval time.Duration
	// SelftestInterval is the minimum time between two login_sign checks of
	// a token; default 10m.
	SelftestInterval time.Duration
	// Known are the serials last read in the module's slots before this
	// prober started (the state database), later entries winning for a
	// slot. Until a poll reads a slot again, a token there whose
	// C_GetTokenInfo fails is named by its slot's serial, as it would be
	// after an earlier poll of this prober, when that serial is not
	// reported elsewhere in the poll. Nothing else uses them: devices are
	// matched by serial, never by slot ID alone.
	Known []KnownSlot
}

// KnownSlot is the serial last read in one slot of the module.
type KnownSlot struct {
	SlotID uint
	Serial string
}

// SelfTest asks for the logged-in self-test of one token.
type SelfTest struct {
	Serial  string
	PINFile string
}

// Request is one poll of a module.
type Request struct {
	// Fresh forces a new worker and a fresh C_Initialize (confirmation rechecks).
	Fresh bool
	// SelfTests lists the tokens with a PIN file; the prober decides whether
	// each is due (selftest_interval, PIN flags, a PIN refused before).
	SelfTests []SelfTest
}

// Result is what one poll of one module found.
type Result struct {
	Module   string
	Start    time.Time
	Duration time.Duration
	// Fresh is true when this poll ran C_Initialize in a new worker. (After
	// a hang, the tokens not yet reported are probed by a fresh worker, but
	// Fresh still says what the poll started with.)
	Fresh bool
	// ModuleError is set when the library could not load or initialise, the
	// worker crashed or gave no answer outside any token, C_GetSlotList
	// failed, hung or crashed tokens used up the budget before every slot
	// was probed, or the poll was cancelled; Tokens may then be partial.
	ModuleError string
	// LoadFailed is set when the library itself could not be loaded (a
	// missing file, not a PKCS#11 library): a configuration error rather
	// than a module fault. ModuleError says why.
	LoadFailed bool
	// Tokens are the tokens that reported, in slot ID order. A token whose
	// C_GetTokenInfo failed carries the serial last seen in its slot, if any
	// (its token_info check says it failed). Self-test results (login_sign)
	// are merged into the token's Checks.
	Tokens []p11.Token
	// Unresponsive are tokens that were in flight when their deadline hit.
	Unresponsive []Unresponsive
	// Crashed are tokens whose call crashed the worker; the tokens after
	// them were probed by a fresh worker.
	Crashed []Crashed
}

// Crashed names a token that was in flight when its worker died.
type Crashed struct {
	SlotID uint
	Serial string // empty if the crash came before the serial was known and no earlier poll knew it
	Check  string // the check in flight (p11.Check* names)
	// Reason says how and where, e.g. "SIGSEGV in C_GetTokenInfo on slot 3".
	Reason string
}

// Unresponsive names a token a worker hung on.
type Unresponsive struct {
	SlotID uint
	Serial string // empty if the hang came before the serial was known and no earlier poll knew it
	Check  string // the check in flight (p11.Check* names; p11.CheckSessionClose for C_CloseSession)
}
