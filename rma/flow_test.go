package rma

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// legal is one transition as issue 10 section 1 states it.
type legal struct {
	from  State
	event string
	to    State
	needs string // comma-separated fields, attestation required
}

// flowSpec is a flow written out independently of flow.go: its states in
// order, its own transitions, and the states closed without a note.
type flowSpec struct {
	states    []State
	steps     []legal
	closeFree []State
}

var specs = map[Flow]flowSpec{
	FlowAdvanceReplacement: {
		states: []State{"open", "confirmed", "authorized", "replacement_shipped", "replacement_installed", "faulty_returned", "closed", "cancelled"},
		steps: []legal{
			{"open", "confirm", "confirmed", ""},
			{"confirmed", "authorize", "authorized", "rma"},
			{"authorized", "ship", "replacement_shipped", "tracking"},
			{"replacement_shipped", "install", "replacement_installed", ""},
			{"replacement_installed", "return", "faulty_returned", "tracking,attest"},
		},
		closeFree: []State{"open", "faulty_returned"},
	},
	FlowReturnAndRepair: {
		states: []State{"open", "confirmed", "authorized", "faulty_shipped", "vendor_received", "repaired_shipped", "reinstalled", "closed", "cancelled"},
		steps: []legal{
			{"open", "confirm", "confirmed", ""},
			{"confirmed", "authorize", "authorized", "rma"},
			{"authorized", "ship", "faulty_shipped", "tracking,attest"},
			{"faulty_shipped", "receive", "vendor_received", ""},
			{"vendor_received", "return", "repaired_shipped", "tracking"},
			{"repaired_shipped", "install", "reinstalled", ""},
		},
		closeFree: []State{"open", "reinstalled"},
	},
	FlowNone: {
		states:    []State{"open", "acknowledged", "closed", "cancelled"},
		steps:     []legal{{"open", "confirm", "acknowledged", ""}},
		closeFree: []State{"open", "acknowledged"},
	},
}

// expected lists every legal transition of a flow: its own steps, and in
// every open state close, cancel, approve and note; in closed and
// cancelled only note.
func expected(f Flow) []legal {
	sp := specs[f]
	out := slices.Clone(sp.steps)
	for _, s := range sp.states {
		if s == "closed" || s == "cancelled" {
			out = append(out, legal{s, "note", s, "note"})
			continue
		}
		closeNeeds := "note"
		if slices.Contains(sp.closeFree, s) {
			closeNeeds = ""
		}
		out = append(out, legal{s, "close", "closed", closeNeeds}, legal{s, "cancel", "cancelled", ""},
			legal{s, "approve", s, ""}, legal{s, "note", s, "note"})
	}
	return out
}

var allEvents = []string{"confirm", "authorize", "ship", "receive", "install", "return", "close", "cancel", "approve", "note"}

func TestFlowLegalTransitions(t *testing.T) {
	t.Parallel()
	for f := range specs {
		if got := FlowStates(f); !slices.Equal(got, specs[f].states) {
			t.Errorf("FlowStates(%s) = %v, want %v", f, got, specs[f].states)
		}
		for _, l := range expected(f) {
			got, err := Next(f, l.from, l.event)
			if err != nil || got != l.to {
				t.Errorf("Next(%s, %s, %s) = %q, %v; want %s", f, l.from, l.event, got, err, l.to)
			}
			want := []string{}
			if l.needs != "" {
				want = strings.Split(l.needs, ",")
			}
			if got := Requires(f, l.from, l.event, true); !slices.Equal(append([]string{}, got...), want) {
				t.Errorf("Requires(%s, %s, %s) = %v, want %v", f, l.from, l.event, got, want)
			}
			noAttest := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "attest" })
			if got := Requires(f, l.from, l.event, false); !slices.Equal(append([]string{}, got...), noAttest) {
				t.Errorf("Requires(%s, %s, %s, attestation off) = %v, want %v", f, l.from, l.event, got, noAttest)
			}
		}
	}
	if !slices.Equal(Steps(), allEvents) {
		t.Errorf("Steps() = %v", Steps())
	}
}

// TestFlowIllegalTransitions tries every state of every flow with every
// event (and an unknown one): each pair not in the legal table is refused
// with ErrIllegalEvent, and the message names exactly the events the state
// allows, in order.
func TestFlowIllegalTransitions(t *testing.T) {
	t.Parallel()
	var every []State
	for _, sp := range specs {
		for _, s := range sp.states {
			if !slices.Contains(every, s) {
				every = append(every, s)
			}
		}
	}
	n := 0
	for f, sp := range specs {
		byState := map[State][]string{}
		isLegal := map[string]bool{}
		for _, l := range expected(f) {
			byState[l.from] = append(byState[l.from], l.event)
			isLegal[string(l.from)+"/"+l.event] = true
		}
		for _, s := range append(every, "opened", "") {
			allowed := slices.DeleteFunc(slices.Clone(allEvents), func(e string) bool { return !slices.Contains(byState[s], e) })
			for _, ev := range append(slices.Clone(allEvents), "repair", "") {
				if isLegal[string(s)+"/"+ev] {
					continue
				}
				n++
				got, err := Next(f, s, ev)
				if err == nil || !errors.Is(err, ErrIllegalEvent) || got != "" {
					t.Errorf("Next(%s, %q, %q) = %q, %v; want an illegal-event error", f, s, ev, got, err)
					continue
				}
				if Requires(f, s, ev, true) != nil {
					t.Errorf("Requires(%s, %q, %q) is not nil for an illegal event", f, s, ev)
				}
				if !slices.Contains(sp.states, s) {
					if !strings.Contains(err.Error(), "is not a state of flow "+string(f)) {
						t.Errorf("Next(%s, %q, %q): %v", f, s, ev, err)
					}
					continue
				}
				var te *TransitionError
				if !errors.As(err, &te) || !slices.Equal(te.Allowed, allowed) || !slices.Equal(Allowed(f, s), allowed) {
					t.Errorf("Next(%s, %s, %q): %v; want allowed %v", f, s, ev, err, allowed)
				}
				if want := "allowed here: " + strings.Join(allowed, ", "); !strings.HasSuffix(err.Error(), want) {
					t.Errorf("Next(%s, %s, %q): %q does not end with %q", f, s, ev, err, want)
				}
			}
		}
	}
	if n < 200 {
		t.Errorf("only %d illegal pairs tried", n)
	}
	if _, err := Next("express", StateOpen, StepConfirm); !errors.Is(err, ErrIllegalEvent) || !strings.Contains(err.Error(), `flow "express" is not a flow`) {
		t.Errorf("unknown flow: %v", err)
	}
}

func TestFlowMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    Flow
		s    State
		in   EventInput
		want string
	}{
		{FlowAdvanceReplacement, StateAuthorized, EventInput{Event: "install"},
			`event "install" does not apply to a case in state authorized (flow advance-replacement); allowed here: ship, close, cancel, approve, note`},
		{FlowNone, StateClosed, EventInput{Event: "repair"},
			`unknown event "repair" does not apply to a case in state closed (flow none); allowed here: note`},
		{FlowAdvanceReplacement, StateConfirmed, EventInput{Event: "authorize"},
			`event authorize in state confirmed needs rma: the vendor's RMA number (--rma N, API field "rma"): missing field`},
		{FlowAdvanceReplacement, StateReplacementInstalled, EventInput{Event: "return", Tracking: "1Z999"},
			`event return in state replacement_installed needs attest: the attestation that the unit's key material was destroyed (--attest zeroized, API field "attest"); an HSM leaves the site only zeroized: missing field`},
		{FlowReturnAndRepair, StateAuthorized, EventInput{Event: "ship"},
			`event ship in state authorized needs tracking: the shipment's tracking number (--tracking T, API field "tracking"); attest: the attestation that the unit's key material was destroyed (--attest zeroized, API field "attest"); an HSM leaves the site only zeroized: missing field`},
		{FlowReturnAndRepair, StateAuthorized, EventInput{Event: "ship", Tracking: "1Z999", Attest: "wiped"},
			`event ship: attest "wiped" is not accepted; the only attestation is "zeroized" (the unit's key material was destroyed): missing field`},
		{FlowReturnAndRepair, StateVendorReceived, EventInput{Event: "close"},
			`event close in state vendor_received needs note: a note saying why (--note S, API field "note"): missing field`},
	} {
		_, err := Check(tc.f, tc.s, tc.in, true)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Check(%s, %s, %+v):\n got %v\nwant %s", tc.f, tc.s, tc.in, err, tc.want)
		}
	}
	// Complete events pass; with the attestation off a shipment needs only
	// its tracking number.
	for _, tc := range []struct {
		f      Flow
		s      State
		in     EventInput
		attest bool
		want   State
	}{
		{FlowReturnAndRepair, StateAuthorized, EventInput{Event: "ship", Tracking: "1Z999", Attest: "zeroized"}, true, StateFaultyShipped},
		{FlowReturnAndRepair, StateAuthorized, EventInput{Event: "ship", Tracking: "1Z999"}, false, StateFaultyShipped},
		{FlowAdvanceReplacement, StateConfirmed, EventInput{Event: "authorize", RMA: "RMA-42"}, true, StateAuthorized},
		{FlowAdvanceReplacement, StateOpen, EventInput{Event: "close"}, true, StateClosed},
	} {
		if got, err := Check(tc.f, tc.s, tc.in, tc.attest); err != nil || got != tc.want {
			t.Errorf("Check(%s, %s, %+v, %v) = %q, %v; want %s", tc.f, tc.s, tc.in, tc.attest, got, err, tc.want)
		}
	}
	if _, err := Check(FlowReturnAndRepair, StateAuthorized, EventInput{Event: "ship"}, false); !errors.Is(err, ErrMissingField) {
		t.Errorf("a shipment without tracking: %v", err)
	}
	for s, want := range map[State]string{StateOpen: "case.opened", StateConfirmed: "case.confirmed", StateClosed: "case.closed",
		StateCancelled: "case.cancelled", StateVendorReceived: "case.vendor_received"} {
		if got := StateEvent(s); got != want {
			t.Errorf("StateEvent(%s) = %s, want %s", s, got, want)
		}
	}
}
