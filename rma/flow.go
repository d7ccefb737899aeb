package rma

// The flows as explicit state machines (issue 10 section 1). Next is the one
// place that says which event moves a case from which state to which;
// Requires says what an event must carry. Both are pure.
//
// Events are the CLI's (`hsm-agent case ID EVENT`) and the API's "event":
//
//	event      advance-replacement                   return-and-repair                      none
//	confirm    open -> confirmed                     open -> confirmed                      open -> acknowledged
//	authorize  confirmed -> authorized (rma)         confirmed -> authorized (rma)          -
//	ship       authorized -> replacement_shipped     authorized -> faulty_shipped           -
//	           (tracking: the vendor ships the       (tracking, attest: the customer ships
//	           replacement)                          the faulty unit)
//	receive    -                                     faulty_shipped -> vendor_received      -
//	install    replacement_shipped ->                repaired_shipped -> reinstalled        -
//	           replacement_installed
//	return     replacement_installed ->              vendor_received -> repaired_shipped    -
//	           faulty_returned (tracking, attest:    (tracking: the vendor returns the
//	           the customer returns the faulty unit) repaired unit)
//	close      any open state -> closed; a note is required unless the case is at the end of its
//	           flow (faulty_returned, reinstalled, acknowledged) or still open
//	cancel     any open state -> cancelled
//	approve    any open state, no change of state (releases the bundle)
//	note       any state, closed and cancelled too, no change of state (needs note)
//
// The opened state keeps its stored name "open" (StateOpen): cases already in
// the store, the CLI, the desks' payloads and the store's open-case index
// (state NOT IN ('closed', 'cancelled')) all use it, so no migration is
// needed. The state's desk event stays "case.opened".

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// RMA states between open and closed (support-model.md section 1).
const (
	StateAcknowledged         State = "acknowledged"          // flow none: a desk has seen the case
	StateConfirmed            State = "confirmed"             // the vendor validated the fault: the RMA clock starts
	StateAuthorized           State = "authorized"            // the vendor issued an RMA number
	StateReplacementShipped   State = "replacement_shipped"   // advance: the replacement is on its way
	StateReplacementInstalled State = "replacement_installed" // advance: the replacement is in service
	StateFaultyReturned       State = "faulty_returned"       // advance: the faulty unit went back, zeroized
	StateFaultyShipped        State = "faulty_shipped"        // return-and-repair: the faulty unit went to the vendor, zeroized
	StateVendorReceived       State = "vendor_received"       // return-and-repair: the 15-business-day clock starts
	StateRepairedShipped      State = "repaired_shipped"      // return-and-repair: the vendor shipped the unit back
	StateReinstalled          State = "reinstalled"           // return-and-repair: the unit is in service again
)

// Flow events: the EVENT of `hsm-agent case ID EVENT` and the API's "event".
const (
	StepConfirm   = "confirm"
	StepAuthorize = "authorize"
	StepShip      = "ship"
	StepReceive   = "receive"
	StepInstall   = "install"
	StepReturn    = "return"
	StepClose     = "close"
	StepCancel    = "cancel"
	StepApprove   = "approve"
	StepNote      = "note"
)

// Steps lists every flow event in the order messages name them.
func Steps() []string {
	return []string{StepConfirm, StepAuthorize, StepShip, StepReceive, StepInstall, StepReturn,
		StepClose, StepCancel, StepApprove, StepNote}
}

// Fields an event may need: the CLI flags --rma, --tracking, --attest and
// --note, and the API's fields of the same names.
const (
	FieldRMA      = "rma"
	FieldTracking = "tracking"
	FieldAttest   = "attest"
	FieldNote     = "note"
)

// AttestZeroized is the one accepted value of the attest field: the unit's
// key material was destroyed (support-model.md section 7).
const AttestZeroized = "zeroized"

// step is one transition of a flow.
type step struct {
	from  State
	event string
	to    State
	needs []string
}

// flowSteps are the flow-specific transitions, in flow order.
var flowSteps = map[Flow][]step{
	FlowAdvanceReplacement: {
		{StateOpen, StepConfirm, StateConfirmed, nil},
		{StateConfirmed, StepAuthorize, StateAuthorized, []string{FieldRMA}},
		{StateAuthorized, StepShip, StateReplacementShipped, []string{FieldTracking}},
		{StateReplacementShipped, StepInstall, StateReplacementInstalled, nil},
		{StateReplacementInstalled, StepReturn, StateFaultyReturned, []string{FieldTracking, FieldAttest}},
	},
	FlowReturnAndRepair: {
		{StateOpen, StepConfirm, StateConfirmed, nil},
		{StateConfirmed, StepAuthorize, StateAuthorized, []string{FieldRMA}},
		{StateAuthorized, StepShip, StateFaultyShipped, []string{FieldTracking, FieldAttest}},
		{StateFaultyShipped, StepReceive, StateVendorReceived, nil},
		{StateVendorReceived, StepReturn, StateRepairedShipped, []string{FieldTracking}},
		{StateRepairedShipped, StepInstall, StateReinstalled, nil},
	},
	FlowNone: {
		{StateOpen, StepConfirm, StateAcknowledged, nil},
	},
}

// FlowStates lists the states of a flow in order, open first, then closed
// and cancelled; nil for an unknown flow.
func FlowStates(f Flow) []State {
	steps, ok := flowSteps[f]
	if !ok {
		return nil
	}
	out := []State{StateOpen}
	for _, s := range steps {
		out = append(out, s.to)
	}
	return append(out, StateClosed, StateCancelled)
}

// finalState is the last state of a flow before closed: closing from it
// (or from open) needs no note.
func finalState(f Flow) State {
	steps := flowSteps[f]
	return steps[len(steps)-1].to
}

// Errors of Next and Check, for errors.Is (the API answers 409 and 400).
var (
	// ErrIllegalEvent: the event does not apply to the case's state.
	ErrIllegalEvent = errors.New("illegal event")
	// ErrMissingField: the event lacks a field it needs (rma, tracking,
	// attest, note), or a field's value is wrong.
	ErrMissingField = errors.New("missing field")
)

// TransitionError is an event the case's state does not take; it names the
// events that state does take.
type TransitionError struct {
	Flow    Flow
	State   State
	Event   string
	Allowed []string
}

// Error implements error.
func (e *TransitionError) Error() string {
	what := fmt.Sprintf("event %q", e.Event)
	if !slices.Contains(Steps(), e.Event) {
		what = fmt.Sprintf("unknown event %q", e.Event)
	}
	allowed := "none"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("%s does not apply to a case in state %s (flow %s); allowed here: %s", what, e.State, e.Flow, allowed)
}

// Is makes errors.Is(err, ErrIllegalEvent) true.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalEvent }

// Next returns the state a case of flow f in state s reaches with event,
// or a *TransitionError naming the events s allows. approve and note leave
// the state as it is.
func Next(f Flow, s State, event string) (State, error) {
	to, _, err := lookupStep(f, s, event)
	return to, err
}

// lookupStep finds the transition of event in state s of flow f.
func lookupStep(f Flow, s State, event string) (State, step, error) {
	steps, ok := flowSteps[f]
	if !ok {
		return "", step{}, fmt.Errorf("flow %q is not a flow; use one of %s, %s, %s: %w",
			f, FlowAdvanceReplacement, FlowReturnAndRepair, FlowNone, ErrIllegalEvent)
	}
	if !slices.Contains(FlowStates(f), s) {
		return "", step{}, fmt.Errorf("state %q is not a state of flow %s; its states: %s: %w",
			s, f, joinStates(FlowStates(f)), ErrIllegalEvent)
	}
	for _, st := range allowedSteps(f, steps, s) {
		if st.event == event {
			return st.to, st, nil
		}
	}
	var names []string
	for _, st := range allowedSteps(f, steps, s) {
		names = append(names, st.event)
	}
	return "", step{}, &TransitionError{Flow: f, State: s, Event: event, Allowed: names}
}

// allowedSteps lists every event state s of flow f takes, in Steps order.
func allowedSteps(f Flow, steps []step, s State) []step {
	if s.Terminal() {
		return []step{{s, StepNote, s, []string{FieldNote}}}
	}
	var out []step
	for _, st := range steps {
		if st.from == s {
			out = append(out, st)
		}
	}
	closeNeeds := []string{FieldNote}
	if s == StateOpen || s == finalState(f) {
		closeNeeds = nil
	}
	out = append(out,
		step{s, StepClose, StateClosed, closeNeeds},
		step{s, StepCancel, StateCancelled, nil},
		step{s, StepApprove, s, nil},
		step{s, StepNote, s, []string{FieldNote}})
	order := Steps()
	slices.SortStableFunc(out, func(a, b step) int { return slices.Index(order, a.event) - slices.Index(order, b.event) })
	return out
}

// Allowed lists the events a case of flow f in state s takes (nil for an
// unknown flow or state).
func Allowed(f Flow, s State) []string {
	steps, ok := flowSteps[f]
	if !ok || !slices.Contains(FlowStates(f), s) {
		return nil
	}
	var out []string
	for _, st := range allowedSteps(f, steps, s) {
		out = append(out, st.event)
	}
	return out
}

// Requires lists the fields event needs in state s of flow f (FieldRMA,
// FieldTracking, FieldAttest, FieldNote); requireAttest is the setting
// rma.require_zeroize_attestation (false leaves FieldAttest out). Nil for
// an illegal event.
func Requires(f Flow, s State, event string, requireAttest bool) []string {
	_, st, err := lookupStep(f, s, event)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range st.needs {
		if n != FieldAttest || requireAttest {
			out = append(out, n)
		}
	}
	return out
}

// EventInput is one flow event as the CLI or the API gives it.
type EventInput struct {
	Event    string
	RMA      string
	Tracking string
	Attest   string
	Note     string
}

// fieldHelp says how to give each field.
var fieldHelp = map[string]string{
	FieldRMA:      "the vendor's RMA number (--rma N, API field \"rma\")",
	FieldTracking: "the shipment's tracking number (--tracking T, API field \"tracking\")",
	FieldAttest:   "the attestation that the unit's key material was destroyed (--attest zeroized, API field \"attest\"); an HSM leaves the site only zeroized",
	FieldNote:     "a note saying why (--note S, API field \"note\")",
}

// Check is Next plus the fields: it returns the state the event reaches,
// a *TransitionError for an illegal event, or an error wrapping
// ErrMissingField that names each missing field and how to give it. An
// attest other than "zeroized" is refused whenever it is given.
func Check(f Flow, s State, in EventInput, requireAttest bool) (State, error) {
	to, err := Next(f, s, in.Event)
	if err != nil {
		return "", err
	}
	if in.Attest != "" && in.Attest != AttestZeroized {
		return "", fmt.Errorf("event %s: attest %q is not accepted; the only attestation is %q (the unit's key material was destroyed): %w",
			in.Event, in.Attest, AttestZeroized, ErrMissingField)
	}
	values := map[string]string{FieldRMA: in.RMA, FieldTracking: in.Tracking, FieldAttest: in.Attest, FieldNote: in.Note}
	var missing []string
	for _, n := range Requires(f, s, in.Event, requireAttest) {
		if strings.TrimSpace(values[n]) == "" {
			missing = append(missing, n+": "+fieldHelp[n])
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("event %s in state %s needs %s: %w", in.Event, s, strings.Join(missing, "; "), ErrMissingField)
	}
	return to, nil
}

// StateEvent is the desk event of a transition into s: "case.<state>",
// and "case.opened" for the open state (as today).
func StateEvent(s State) string {
	if s == StateOpen {
		return EventOpened
	}
	return "case." + string(s)
}

func joinStates(states []State) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
