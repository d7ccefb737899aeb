package rma

import (
	"encoding/json"
	"strconv"
	"time"
)

// Kind is who a fault belongs to.
type Kind string

// Fault kinds (support-model.md section 2).
const (
	KindHardware    Kind = "hardware"    // missing, failed, unresponsive, self-test failed, slow: vendor
	KindOperational Kind = "operational" // PIN locked, login refused, module error: internal only
	KindFirmware    Kind = "firmware"    // below minimum or not approved: vendor
	KindContract    Kind = "contract"    // expiring or expired: internal only
)

// Flow is the hardware return flow a case follows.
type Flow string

// Flows by contract tier (support-model.md section 1).
const (
	FlowAdvanceReplacement Flow = "advance-replacement" // premium-plus, premium
	FlowReturnAndRepair    Flow = "return-and-repair"   // standard
	FlowNone               Flow = "none"                // no RMA: operational, firmware, contract, expired contract
)

// State is where a case stands.
type State string

// Case states. Later flows add RMA states between open and closed.
const (
	StateOpen      State = "open"
	StateClosed    State = "closed"
	StateCancelled State = "cancelled"
)

// Terminal reports whether no further automatic event applies to the case.
func (s State) Terminal() bool { return s == StateClosed || s == StateCancelled }

// Fault is one confirmed problem of one device.
type Fault struct {
	Serial string
	Device string
	Kind   Kind
	// Class is the stable name of the fault inside its kind: missing, failed,
	// unresponsive, selftest_failed, slow, pin_locked, pin_count_low,
	// login_refused, module_error, below_minimum, not_approved, expiring, expired.
	Class string
	// Summary is one line for a ticket subject; Description the details
	// (what was observed, since when, how often, what level 1 tried).
	Summary     string
	Description string
	// ObservedAt is when the fault was first seen (first failing poll).
	ObservedAt time.Time
	// ConfirmedAt is when confirmation completed.
	ConfirmedAt time.Time
}

// DedupKey is the one key of a fault: serial + kind + class. At most one
// open case has a given key.
func (f Fault) DedupKey() string { return DedupKey(f.Serial, f.Kind, f.Class) }

// DedupKey builds a dedup key from its parts.
func DedupKey(serial string, kind Kind, class string) string {
	return serial + "/" + string(kind) + "/" + class
}

// Case is one support case: one fault of one device, its severity, its flow
// and where it stands.
type Case struct {
	ID          string    `json:"id"`
	DedupKey    string    `json:"dedup_key"`
	Serial      string    `json:"serial"`
	Device      string    `json:"device"`
	Fault       string    `json:"fault"` // the fault class
	Kind        Kind      `json:"kind"`
	Severity    int       `json:"severity"`
	Tier        string    `json:"tier"`
	Flow        Flow      `json:"flow"`
	State       State     `json:"state"`
	Environment string    `json:"environment"`
	Pool        string    `json:"pool"`
	Summary     string    `json:"summary"`
	Description string    `json:"description"`
	OpenedAt    time.Time `json:"opened_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ClosedAt    time.Time `json:"closed_at,omitzero"`
	RMANumber   string    `json:"rma_number"`
	// Tracking is the tracking number of the flow's last shipment (ship,
	// return); each one stays in the case's event log.
	Tracking string `json:"tracking,omitempty"`
	// ClearedAt is when the device stopped showing the fault (zero while
	// it shows it); a recurrence unsets it.
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	// Model and Firmware are the token's as the case opened, ContractID
	// the device's contract: facts every vendor asks for (support-model.md
	// section 5), in every desk's ticket.
	Model      string `json:"model,omitempty"`
	Firmware   string `json:"firmware,omitempty"`
	ContractID string `json:"contract_id,omitempty"`
	// Due holds the case's clocks (e.g. "vendor_response") as RFC3339 times.
	Due map[string]time.Time `json:"due"`
	// Impact says what the severity rests on (pool, healthy members left).
	Impact string `json:"impact,omitempty"`
	// Reason says why a desk role does not get the case (e.g. contract expired).
	Reason string `json:"reason,omitempty"`
	// Held is true while the fault is flapping: recurrences are recorded on
	// this case without new desk events.
	Held bool `json:"held,omitempty"`
	// Occurrences counts how often the fault was confirmed on this case.
	Occurrences int `json:"occurrences"`
	// DeskRefs maps desk name to the ticket ID that desk returned.
	DeskRefs map[string]string `json:"desk_refs,omitempty"`
	// Seq is the sequence number of the case's last event.
	Seq int `json:"sequence"`
	// BundleApproved is set when an operator released the bundle to
	// desks with upload: approve.
	BundleApproved bool `json:"bundle_approved,omitempty"`
}

// Event types of the append-only case log. The case.* ones are also what
// desks receive (the "event" field of the desk payload).
const (
	EventOpened         = "case.opened"
	EventUpdated        = "case.updated"   // the fault was confirmed again on an open case
	EventCleared        = "case.cleared"   // the device recovered; the case stays open until closed
	EventReopened       = "case.reopened"  // the same fault after close, within reopen_window
	EventHeld           = "case.held"      // flapping: recurrences are held on this case
	EventClosed         = "case.closed"    // by an operator (or a desk, later)
	EventCancelled      = "case.cancelled" // by an operator
	EventBundleApproved = "case.approved"  // an operator released the bundle
	EventBundleAdded    = "case.bundle"    // the bundle that could not be written when the case went out
	EventPage           = "case.page"      // severity 1: a pager event with phone and vendor reference
	EventTest           = "desk.test"      // `hsm-agent desk test NAME`
	EventDelivery       = "delivery"       // log only: a delivery attempt and its outcome
	EventNote           = "note"           // log only: an operator's note
)

// Event is one entry of a case's append-only log: a transition, a delivery
// attempt or an operator action, with time and actor.
type Event struct {
	CaseID string    `json:"case_id"`
	Seq    int       `json:"sequence"` // per case, 1, 2, 3, ...; 0 for log-only rows
	Type   string    `json:"type"`
	At     time.Time `json:"at"`
	// Actor is "agent", "operator" (with the OS user when known, e.g.
	// "operator:alice") or "desk:NAME".
	Actor string `json:"actor"`
	Note  string `json:"note,omitempty"`
	// Data carries type-specific details as JSON (e.g. the delivery outcome).
	Data json.RawMessage `json:"data,omitempty"`
}

// Delivery states of an outbox row.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryParked    = "parked" // a non-retryable answer: kept, shown as failed, never dropped
)

// Delivery is one outbox row: one case event for one desk. It is written in
// the same transaction as the event, before any network call.
type Delivery struct {
	ID     int64  `json:"id"`
	CaseID string `json:"case_id"`
	Seq    int    `json:"sequence"`
	Desk   string `json:"desk"`
	// IdempotencyKey is "<case-id>:<seq>", sent on every attempt.
	IdempotencyKey string `json:"idempotency_key"`
	// Payload is the desk event (DeskEvent) as JSON, without sent_at and
	// bundle content, which are added at send time.
	Payload json.RawMessage `json:"payload"`
	// BundlePath is the bundle to attach ("" for none); WithholdBundle is set
	// for desks with upload: approve until the operator approves.
	BundlePath     string    `json:"bundle_path,omitempty"`
	WithholdBundle bool      `json:"withhold_bundle,omitempty"`
	State          string    `json:"state"`
	Attempts       int       `json:"attempts"`
	NextAttempt    time.Time `json:"next_attempt"`
	LastError      string    `json:"last_error,omitempty"`
	TicketID       string    `json:"ticket_id,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	DeliveredAt    time.Time `json:"delivered_at,omitzero"`
}

// IdempotencyKey builds the key a desk sees on every attempt of one event.
func IdempotencyKey(caseID string, seq int) string {
	return caseID + ":" + strconv.Itoa(seq)
}

// DeskEvent is the JSON a desk receives for one case event (design.md,
// "Webhook desk event"). Fields may be added, never renamed.
type DeskEvent struct {
	Event    string     `json:"event"`
	Sequence int        `json:"sequence"`
	SentAt   string     `json:"sent_at"`
	Case     Case       `json:"case"`
	Bundle   *BundleRef `json:"bundle,omitempty"`
	Page     *Page      `json:"page,omitempty"`
	Test     bool       `json:"test,omitempty"`
	// BundleNote says why an event that should carry the diagnostics
	// bundle goes without it ("diagnostics bundle could not be written:
	// REASON; it will follow"); a later case.bundle event brings it.
	BundleNote string `json:"bundle_note,omitempty"`
	// Step is the flow event behind a case.<state> event (confirm,
	// authorize, ship, ... close, cancel): who, when, and what it carried.
	Step *StepRecord `json:"step,omitempty"`
}

// StepRecord is one flow event as the case's log and its desks keep it.
type StepRecord struct {
	// Event is the flow event (StepConfirm, ...).
	Event string `json:"event"`
	// From is the state the case left.
	From State `json:"from"`
	// Actor is who reported it ("operator:alice", "api", "agent").
	Actor string `json:"actor"`
	// At is when it happened (the CLI's --at, the API's "at"; default:
	// when it was recorded).
	At time.Time `json:"at"`
	// RecordedAt is when the agent recorded it.
	RecordedAt time.Time `json:"recorded_at"`
	RMA        string    `json:"rma,omitempty"`
	Tracking   string    `json:"tracking,omitempty"`
	// Attest is "zeroized" when the unit left the site with its key
	// material destroyed.
	Attest string `json:"attest,omitempty"`
	Note   string `json:"note,omitempty"`
	// Request is what an RMA request carries (RMARequest: the requested
	// firmware, the site's shipping address and contact) on the events
	// that ask the vendor for a unit: confirm and authorize.
	Request map[string]any `json:"rma_request,omitempty"`
}

// BundleRef describes the diagnostics bundle attached to an event.
type BundleRef struct {
	Name          string `json:"name"`
	SHA256        string `json:"sha256"`
	Size          int64  `json:"size"`
	ContentBase64 string `json:"content_base64,omitempty"`
	// Withheld is true when the desk's upload policy is approve and no
	// operator has approved the bundle yet.
	Withheld bool `json:"withheld,omitempty"`
}

// Page is what a pager desk needs to get a human to call the vendor.
type Page struct {
	Text      string `json:"text"`
	Phone     string `json:"phone"`
	Region    string `json:"region"`
	VendorRef string `json:"vendor_ref"`
}
