package rma_test

import (
	"context"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// A flow-none case shows cleared_at once its device is healthy, loses it
// when the fault recurs, and closes by itself after auto_close_after of
// continuous health, counted from the last clearing, across a restart.
func TestAutoCloseFlowNone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": oldFirmware})
	c := h.only("P1/firmware/below_minimum")
	if !c.ClearedAt.IsZero() {
		t.Fatalf("cleared_at %s on a case whose fault shows", c.ClearedAt)
	}
	h.poll(true, nil)
	cleared := h.clock.Now()
	if got := h.only(c.DedupKey); !got.ClearedAt.Equal(cleared) {
		t.Errorf("cleared_at %s, want %s", got.ClearedAt, cleared)
	}
	h.clock.Advance(40 * time.Minute)
	h.confirm(map[string]fault{"pay-1": oldFirmware}) // back: health starts over
	if got := h.only(c.DedupKey); !got.ClearedAt.IsZero() {
		t.Errorf("cleared_at %s after the fault came back", got.ClearedAt)
	}
	h.poll(true, nil)
	cleared = h.clock.Now()
	h.clock.Advance(30 * time.Minute) // an hour since the first clearing, 30 min since the last
	h.e.CheckAutoCloseNow()
	if got := h.only(c.DedupKey); got.State != rma.StateOpen {
		t.Fatalf("closed after 30 min of health: %s", got.State)
	}
	h.restart()
	h.clock.Set(cleared.Add(time.Hour))
	h.e.CheckAutoCloseNow()
	got := h.only(c.DedupKey)
	if got.State != rma.StateClosed || !got.ClearedAt.Equal(cleared) {
		t.Fatalf("after an hour of health: %s, cleared_at %s", got.State, got.ClearedAt)
	}
	evs, _ := h.st.Events(context.Background(), c.ID)
	last := evs[len(evs)-1]
	if last.Type != rma.EventClosed || last.Actor != rma.ActorAgent {
		t.Errorf("last event %+v", last)
	}
	ds := h.deskEvents(c.ID, got.Seq)
	if len(ds) != 2 || ds[0].Event != rma.EventClosed || ds[0].Case.ClearedAt.IsZero() || ds[0].Step == nil || ds[0].Step.Actor != rma.ActorAgent {
		t.Errorf("desk events of the close: %+v", ds)
	}
	h.e.CheckAutoCloseNow() // nothing twice
	if n := len(h.deskEvents(c.ID, got.Seq)); n != 2 {
		t.Errorf("%d rows for the close after a second check", n)
	}
}

// A hardware case the vendor has not confirmed is cancelled after
// auto_close_after of health, with the note to its desks; one the vendor
// confirmed stays in its flow.
func TestAutoCloseHardware(t *testing.T) {
	t.Parallel()
	for _, confirmed := range []bool{false, true} {
		h := newHarness(t, testConfig("dev-1"))
		h.confirm(map[string]fault{"dev-1": missingDev})
		c := h.only("D1/hardware/missing")
		if confirmed {
			if _, err := h.e.Step(context.Background(), c.ID, rma.EventInput{Event: rma.StepConfirm}, rma.Action{Actor: "desk:vendor"}); err != nil {
				t.Fatal(err)
			}
		}
		h.poll(true, nil)
		h.clock.Advance(3 * time.Hour)
		h.e.CheckAutoCloseNow()
		got := h.only(c.DedupKey)
		if confirmed {
			if got.State != rma.StateConfirmed {
				t.Errorf("a confirmed case ended by itself: %s", got.State)
			}
			continue
		}
		if got.State != rma.StateCancelled {
			t.Fatalf("state %s, want cancelled", got.State)
		}
		ds := h.deskEvents(c.ID, got.Seq)
		equal(t, "desks", []string{h.deliveries(c.ID)[len(h.deliveries(c.ID))-2].Desk, h.deliveries(c.ID)[len(h.deliveries(c.ID))-1].Desk}, []string{"vendor", "ops"})
		for _, d := range ds {
			if d.Event != rma.EventCancelled || d.Step == nil || d.Step.Note != rma.AutoCancelNote {
				t.Errorf("desk event %+v", d)
			}
		}
	}
}
