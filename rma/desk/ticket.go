package desk

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma"
)

// NotReported stands for a fact the case does not carry (yet).
const NotReported = "not reported"

// Ticket is a desk event as a ticketing desk reads it: the event plus the
// device facts a vendor asks for (support-model.md section 5), taken from
// the case (its model, firmware and contract ID as it opened).
type Ticket struct {
	rma.DeskEvent
	Model      string
	Firmware   string
	ContractID string
}

// Fact is one labelled line of a ticket's text.
type Fact struct {
	Label string
	Value string
}

// ParseTicket reads a Message body (the JSON desk event).
func ParseTicket(body []byte) (Ticket, error) {
	var t Ticket
	if err := json.Unmarshal(body, &t.DeskEvent); err != nil {
		return t, fmt.Errorf("body is not a desk event: %w", err)
	}
	t.Model, t.Firmware, t.ContractID = t.Case.Model, t.Case.Firmware, t.Case.ContractID
	return t, nil
}

// ReadTicket is ParseTicket for a desk's Send: a body that is not a desk
// event is an *Error with ReasonInvalid (parked, never retried).
func ReadTicket(deskName string, body []byte) (Ticket, error) {
	t, err := ParseTicket(body)
	if err != nil {
		return t, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("desk %q: read the case event: %w", deskName, err)}
	}
	return t, nil
}

// Key is what the desk files the case under: its dedup key, or its ID for
// an event without one.
func (t Ticket) Key() string {
	if t.Case.DedupKey != "" {
		return t.Case.DedupKey
	}
	return t.Case.ID
}

// Closing reports whether the event ends the case (the ticket is resolved).
func (t Ticket) Closing() bool {
	return t.Event == rma.EventClosed || t.Event == rma.EventCancelled
}

// orNot is v trimmed, or NotReported.
func orNot(v string) string {
	if v = strings.TrimSpace(v); v == "" {
		return NotReported
	}
	return v
}

// Facts are the case facts every ticket carries: serial, device, model,
// firmware, environment, severity, pool impact, tier, contract ID, the
// fault, and the RMA request's requested firmware and shipping details
// when the event carries one.
func (t Ticket) Facts() []Fact {
	c := t.Case
	facts := []Fact{
		{"Serial", orNot(c.Serial)},
		{"Device", orNot(c.Device)},
		{"Model", orNot(t.Model)},
		{"Firmware", orNot(t.Firmware)},
		{"Environment", orNot(c.Environment)},
		{"Severity", strconv.Itoa(c.Severity)},
		{"Pool impact", orNot(strings.TrimSpace(c.Pool + " " + c.Impact))},
		{"Tier", orNot(c.Tier)},
		{"Contract ID", orNot(t.ContractID)},
		{"Fault", string(c.Kind) + "/" + c.Fault},
		{"Case", c.ID},
		{"Dedup key", c.DedupKey},
	}
	return append(facts, t.RequestFacts()...)
}

// RequestFacts are the RMA request's requested firmware and shipping
// details (the confirm and authorize steps carry them; NotReported before).
func (t Ticket) RequestFacts() []Fact {
	var req map[string]any
	if t.Step != nil {
		req = t.Step.Request
	}
	fw, _ := req[rma.RequestFirmware].(string)
	facts := []Fact{{"Requested firmware", orNot(fw)}}
	ship, _ := req[rma.RequestShipTo].(map[string]any)
	if len(ship) == 0 {
		facts = append(facts, Fact{"Ship to", NotReported + " (the RMA request carries it)"})
	}
	for _, k := range slices.Sorted(maps.Keys(ship)) {
		facts = append(facts, Fact{"Ship to " + k, fmt.Sprint(ship[k])})
	}
	if missing, ok := req[rma.RequestMissing].([]any); ok && len(missing) > 0 {
		facts = append(facts, Fact{"Missing", fmt.Sprint(missing...)})
	}
	return facts
}

// StepFacts are the later event's own facts: state, the flow step and
// what it carried, occurrences, clearing and the page.
func (t Ticket) StepFacts() []Fact {
	c := t.Case
	facts := []Fact{{"Event", t.Event}, {"State", string(c.State)}}
	if s := t.Step; s != nil {
		facts = append(facts, Fact{"Step", s.Event + " by " + s.Actor + " at " + s.At.UTC().Format("2006-01-02 15:04:05Z")})
		for _, kv := range []Fact{{"RMA", s.RMA}, {"Tracking", s.Tracking}, {"Attest", s.Attest}, {"Note", s.Note}} {
			if kv.Value != "" {
				facts = append(facts, kv)
			}
		}
		if s.Request != nil {
			facts = append(facts, t.RequestFacts()...)
		}
	}
	if c.Occurrences > 0 {
		facts = append(facts, Fact{"Occurrences", strconv.Itoa(c.Occurrences)})
	}
	if !c.ClearedAt.IsZero() {
		facts = append(facts, Fact{"Cleared at", c.ClearedAt.UTC().Format("2006-01-02 15:04:05Z")})
	}
	if p := t.Page; p != nil {
		facts = append(facts, Fact{"Page", p.Text}, Fact{"Call", orNot(p.Phone)}, Fact{"Vendor reference", orNot(p.VendorRef)})
	}
	return facts
}

// BundleNote says what became of the diagnostics bundle ("" when the
// event has none to speak of).
func (t Ticket) BundleNote() string {
	b := t.Bundle
	switch {
	case b == nil:
		if t.DeskEvent.BundleNote != "" {
			return "Diagnostics bundle: " + t.DeskEvent.BundleNote
		}
		return ""
	case b.Withheld:
		return fmt.Sprintf("Diagnostics bundle %s (%d bytes, sha256 %s) is held until an operator approves its upload.", b.Name, b.Size, b.SHA256)
	case b.ContentBase64 == "":
		return fmt.Sprintf("Diagnostics bundle %s (%d bytes, sha256 %s) is no longer on the host.", b.Name, b.Size, b.SHA256)
	default:
		return fmt.Sprintf("Diagnostics bundle attached: %s (%d bytes, sha256 %s)", b.Name, b.Size, b.SHA256)
	}
}

// BundleContent returns the bundle to attach: its name and bytes; ok is
// false without content or while withheld.
func (t Ticket) BundleContent() (name string, content []byte, ok bool, err error) {
	b := t.Bundle
	if b == nil || b.Withheld || b.ContentBase64 == "" {
		return "", nil, false, nil
	}
	content, err = base64.StdEncoding.DecodeString(b.ContentBase64)
	if err != nil {
		return "", nil, false, fmt.Errorf("bundle %s: content is not base64: %w", b.Name, err)
	}
	return b.Name, content, true, nil
}

// PlainText renders facts as "Label: value" lines.
func PlainText(facts []Fact) string {
	var b strings.Builder
	for _, f := range facts {
		fmt.Fprintf(&b, "%s: %s\n", f.Label, f.Value)
	}
	return b.String()
}
