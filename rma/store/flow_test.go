package store

import (
	"context"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// The flow's columns (migration 0003) round-trip: the RMA number, the last
// tracking number and cleared_at, which a later transition unsets; a case in
// an RMA state is open for the dedup index.
func TestCaseFlowColumnsRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0)
	cleared := t0.Add(time.Minute)
	_, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.State, c.RMANumber, c.Tracking, c.ClearedAt = rma.StateReplacementShipped, "RMA-7", "1Z999", cleared
		return rma.Event{Type: rma.StateEvent(c.State), At: cleared, Actor: "operator"}, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Case(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != rma.StateReplacementShipped || got.RMANumber != "RMA-7" || got.Tracking != "1Z999" || !got.ClearedAt.Equal(cleared) {
		t.Errorf("read back %+v", got)
	}
	if open, err := s.Cases(ctx, true); err != nil || len(open) != 1 {
		t.Errorf("open cases: %d %v, want the replacement_shipped case", len(open), err)
	}
	if _, err := s.OpenCase(ctx, sampleCase("C2", "S1"), openedEvent(t0), nil); err == nil {
		t.Error("a second case opened for the key of a case in state replacement_shipped")
	}
	_, err = s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.ClearedAt = time.Time{}
		return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Case(ctx, "C1"); !got.ClearedAt.IsZero() || got.Tracking != "1Z999" {
		t.Errorf("after a recurrence: cleared_at %v tracking %q", got.ClearedAt, got.Tracking)
	}
}
