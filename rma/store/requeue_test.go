package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

func TestRequeueParked(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0, "vendor", "pager")
	ds, _ := s.Deliveries(ctx, "C1")
	vendor, pager := ds[0], ds[1]
	if err := s.RecordAttempt(ctx, pager.ID, Attempt{At: t0.Add(time.Second), Parked: true, Status: 400, Err: "HTTP 400: bad routing key"}); err != nil {
		t.Fatal(err)
	}
	parked, err := s.ParkedDeliveries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 1 || parked[0].ID != pager.ID || parked[0].LastError != "HTTP 400: bad routing key" || parked[0].Attempts != 1 {
		t.Fatalf("parked rows: %+v", parked)
	}
	// A pending row is not parked: nothing changes.
	if err := s.Requeue(ctx, vendor.ID, "operator:alice"); !errors.Is(err, ErrNoChange) {
		t.Errorf("requeue of a pending row: %v, want ErrNoChange", err)
	}
	if err := s.Requeue(ctx, 999, "operator:alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("requeue of an unknown row: %v, want ErrNotFound", err)
	}
	if err := s.Requeue(ctx, pager.ID, "operator:alice"); err != nil {
		t.Fatal(err)
	}
	d := delivery(t, s, "C1", pager.ID)
	if d.State != rma.DeliveryPending || d.Attempts != 1 || d.LastError != "HTTP 400: bad routing key" {
		t.Errorf("after requeue: %+v", d)
	}
	// The worker's scan finds it due now.
	due, _ := s.DueDeliveries(ctx, "pager", time.Now(), 10)
	if len(due) != 1 || due[0].ID != pager.ID {
		t.Errorf("due after requeue: %+v", due)
	}
	if parked, _ := s.ParkedDeliveries(ctx); len(parked) != 0 {
		t.Errorf("still parked: %+v", parked)
	}
	evs, err := s.Events(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	if last.Type != rma.EventDelivery || last.Actor != "operator:alice" {
		t.Errorf("last case log event: %+v", last)
	}
	// Requeued twice: the second is no change.
	if err := s.Requeue(ctx, pager.ID, "operator:alice"); !errors.Is(err, ErrNoChange) {
		t.Errorf("second requeue: %v", err)
	}
}
