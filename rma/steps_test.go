package rma_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// deskEvents decodes the desk events of a case's outbox rows from seq on.
func (h *harness) deskEvents(id string, fromSeq int) []rma.DeskEvent {
	h.t.Helper()
	var out []rma.DeskEvent
	for _, d := range h.deliveries(id) {
		if d.Seq < fromSeq {
			continue
		}
		var ev rma.DeskEvent
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// An advance replacement driven through Engine.Step: every transition is a
// case.<state> event with the actor, the time it happened and what it
// carried, and goes to the vendor desk and the internal desk (never the
// pager) with the whole case; refused events change nothing; a restart
// mid-flow keeps the state and resends nothing.
func TestEngineStepAdvanceReplacement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	ctx := context.Background()
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	if c.Flow != rma.FlowAdvanceReplacement {
		t.Fatalf("flow %s", c.Flow)
	}
	vendor := rma.Action{Actor: "desk:vendor"}
	happened := start.Add(time.Minute).Truncate(time.Second)

	must := func(in rma.EventInput, a rma.Action, want rma.State) rma.Case {
		t.Helper()
		got, err := h.e.Step(ctx, c.ID, in, a)
		if err != nil || got.State != want {
			t.Fatalf("%s: state %s, err %v; want %s", in.Event, got.State, err, want)
		}
		return got
	}
	refused := func(in rma.EventInput, target error, words ...string) {
		t.Helper()
		before, rows := h.cases(), len(h.deliveries(c.ID))
		_, err := h.e.Step(ctx, c.ID, in, vendor)
		if !errors.Is(err, target) {
			t.Errorf("%s: err %v, want %v", in.Event, err, target)
		}
		for _, w := range words {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not say %q", in.Event, err, w)
			}
		}
		if after := h.cases(); after[0].Seq != before[0].Seq || after[0].State != before[0].State || len(h.deliveries(c.ID)) != rows {
			t.Errorf("%s was refused but changed the case or the outbox", in.Event)
		}
	}

	refused(rma.EventInput{Event: rma.StepShip, Tracking: "1Z"}, rma.ErrIllegalEvent, "allowed here: confirm, close, cancel, approve, note")
	refused(rma.EventInput{Event: "frobnicate"}, rma.ErrIllegalEvent, `unknown event "frobnicate"`)
	seq := c.Seq + 1
	got := must(rma.EventInput{Event: rma.StepConfirm, Note: "vendor validated the fault"}, rma.Action{Actor: "desk:vendor", At: happened}, rma.StateConfirmed)
	refused(rma.EventInput{Event: rma.StepAuthorize}, rma.ErrMissingField, "--rma")
	got = must(rma.EventInput{Event: rma.StepAuthorize, RMA: "RMA-42"}, vendor, rma.StateAuthorized)
	if got.RMANumber != "RMA-42" {
		t.Errorf("rma number %q", got.RMANumber)
	}
	got = must(rma.EventInput{Event: rma.StepShip, Tracking: "1Z-REPL"}, vendor, rma.StateReplacementShipped)

	// A restart mid-flow: same state, nothing queued again.
	rows := len(h.deliveries(c.ID))
	h.restart()
	h.e.CheckPagesNow()
	if n := len(h.deliveries(c.ID)); n != rows {
		t.Errorf("restart added %d outbox rows", n-rows)
	}
	// (The SLA tick may log its due dates, a log-only case.due event.)
	if now := h.only("P1/hardware/missing"); now.State != rma.StateReplacementShipped || now.RMANumber != got.RMANumber {
		t.Errorf("after restart: %s rma %q, want %s rma %q", now.State, now.RMANumber, rma.StateReplacementShipped, got.RMANumber)
	}

	must(rma.EventInput{Event: rma.StepInstall}, rma.Action{Actor: rma.ActorAgent}, rma.StateReplacementInstalled)
	refused(rma.EventInput{Event: rma.StepReturn, Tracking: "1Z-BACK"}, rma.ErrMissingField, "--attest zeroized")
	refused(rma.EventInput{Event: rma.StepReturn, Tracking: "1Z-BACK", Attest: "wiped"}, rma.ErrMissingField, `"zeroized"`)
	refused(rma.EventInput{Event: rma.StepClose}, rma.ErrMissingField, "note")
	must(rma.EventInput{Event: rma.StepReturn, Tracking: "1Z-BACK", Attest: rma.AttestZeroized}, rma.Action{Actor: "operator:alice"}, rma.StateFaultyReturned)
	got = must(rma.EventInput{Event: rma.StepClose}, rma.Action{Actor: "operator:alice"}, rma.StateClosed)
	if got.ClosedAt.IsZero() || got.Tracking != "1Z-BACK" || got.RMANumber != "RMA-42" {
		t.Errorf("closed case %+v", got)
	}
	refused(rma.EventInput{Event: rma.StepConfirm}, rma.ErrTerminal, "was already closed")

	want := []string{"case.confirmed", "case.authorized", "case.replacement_shipped", "case.replacement_installed",
		"case.faulty_returned", "case.closed"}
	var rowsGot []string
	for _, d := range h.deliveries(c.ID) {
		if d.Seq >= seq {
			rowsGot = append(rowsGot, d.Desk)
		}
	}
	if strings.Count(strings.Join(rowsGot, " "), "pager") != 0 || len(rowsGot) != 2*len(want) {
		t.Errorf("desks of the flow rows: %v, want vendor and ops for each of %d events", rowsGot, len(want))
	}
	var evs []string
	for i, ev := range h.deskEvents(c.ID, seq) {
		if i%2 == 1 {
			continue
		}
		evs = append(evs, ev.Event)
		if ev.Step == nil || ev.Case.ID != c.ID || ev.Case.Seq != ev.Sequence {
			t.Errorf("%s: desk event without its step or the case: %+v", ev.Event, ev)
			continue
		}
		if ev.Event != "case.confirmed" && ev.Case.RMANumber != "RMA-42" {
			t.Errorf("%s: the case's rma number %q", ev.Event, ev.Case.RMANumber)
		}
		switch ev.Event {
		case "case.confirmed":
			if !ev.Step.At.Equal(happened) || ev.Step.Actor != "desk:vendor" || ev.Step.Note != "vendor validated the fault" || ev.Step.From != rma.StateOpen {
				t.Errorf("confirm step %+v, want at %s", ev.Step, happened)
			}
		case "case.faulty_returned":
			if ev.Step.Attest != rma.AttestZeroized || ev.Step.Tracking != "1Z-BACK" || ev.Case.Tracking != "1Z-BACK" || ev.Step.Actor != "operator:alice" {
				t.Errorf("return step %+v", ev.Step)
			}
		}
	}
	equal(t, "desk events", evs, want)

	// The log keeps the attestation with its actor.
	log, err := h.st.Events(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range log {
		if ev.Type == "case.faulty_returned" && (ev.Actor != "operator:alice" || !strings.Contains(string(ev.Data), `"attest":"zeroized"`)) {
			t.Errorf("log entry %+v %s", ev, ev.Data)
		}
		if ev.Type == "case.confirmed" && !ev.At.Equal(happened) {
			t.Errorf("confirmed logged at %s, want %s", ev.At, happened)
		}
	}
}

// With rma.require_zeroize_attestation false, the return-and-repair ship
// goes without --attest; with it (the default) it is refused. A time in the
// future is refused.
func TestEngineStepAttestationSetting(t *testing.T) {
	t.Parallel()
	for _, require := range []bool{true, false} {
		cfg := testConfig("dev-1")
		cfg.RMA.RequireZeroizeAttestation = require
		h := newHarness(t, cfg)
		ctx := context.Background()
		h.confirm(map[string]fault{"dev-1": missingDev})
		c := h.only("D1/hardware/missing")
		if c.Flow != rma.FlowReturnAndRepair {
			t.Fatalf("flow %s", c.Flow)
		}
		a := rma.Action{Actor: "operator:bob"}
		if _, err := h.e.Step(ctx, c.ID, rma.EventInput{Event: rma.StepConfirm}, rma.Action{At: start.Add(time.Hour)}); !errors.Is(err, rma.ErrMissingField) || !strings.Contains(err.Error(), "future") {
			t.Errorf("an event in the future: %v", err)
		}
		for _, in := range []rma.EventInput{{Event: rma.StepConfirm}, {Event: rma.StepAuthorize, RMA: "R1"}} {
			if _, err := h.e.Step(ctx, c.ID, in, a); err != nil {
				t.Fatal(err)
			}
		}
		_, err := h.e.Step(ctx, c.ID, rma.EventInput{Event: rma.StepShip, Tracking: "T1"}, a)
		if require != errors.Is(err, rma.ErrMissingField) {
			t.Errorf("require %v: ship without attest: %v", require, err)
		}
	}
}

// A recurrence of the fault of a case inside an RMA flow appends to it: the
// store's open-case rule (every state but closed and cancelled) holds for
// the flow states, across a restart too (the tracker is seeded from it).
func TestEngineRecurrenceAppendsToCaseInFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	ctx := context.Background()
	h.confirm(map[string]fault{"dev-1": missingDev})
	c := h.only("D1/hardware/missing")
	for _, in := range []rma.EventInput{{Event: rma.StepConfirm}, {Event: rma.StepAuthorize, RMA: "R9"}} {
		if _, err := h.e.Step(ctx, c.ID, in, rma.Action{}); err != nil {
			t.Fatal(err)
		}
	}
	h.restart()
	h.poll(true, nil) // cleared: the seeded fault clears on this case
	h.confirm(map[string]fault{"dev-1": missingDev})
	got := h.only("D1/hardware/missing")
	if got.ID != c.ID || got.State != rma.StateAuthorized || got.Occurrences != 2 {
		t.Errorf("after the recurrence: %+v", got)
	}
	var evs []string // without the SLA tick's log-only case.due events
	for _, ev := range h.events(c.ID) {
		if ev != rma.EventDue {
			evs = append(evs, ev)
		}
	}
	equal(t, "events", evs, []string{rma.EventOpened, "case.confirmed", "case.authorized", rma.EventCleared, rma.EventUpdated})
}
