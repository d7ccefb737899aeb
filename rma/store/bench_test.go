package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// enqueue writes cases*(1+updates) events with one outbox row per desk
// each, the way the engine does during an outage, and returns the number
// of rows.
func enqueue(b *testing.B, s *Store, cases, updates int, desks ...string) int {
	b.Helper()
	ctx := context.Background()
	n := 0
	for i := 0; i < cases; i++ {
		id := fmt.Sprintf("C%06d", i)
		if _, err := s.OpenCase(ctx, sampleCase(id, id), openedEvent(t0), rows(desks...)); err != nil {
			b.Fatal(err)
		}
		n += len(desks)
		for u := 0; u < updates; u++ {
			if _, err := s.Transition(ctx, id, updateFn(t0.Add(time.Duration(u+1)*time.Second))); err != nil {
				b.Fatal(err)
			}
			n++ // updateFn queues for vendor only
		}
	}
	return n
}

// drain delivers every due row of desk one by one, as the desk worker
// does: a batch of due rows, then one RecordAttempt per row.
func drain(b *testing.B, s *Store, desk string) int {
	b.Helper()
	ctx := context.Background()
	n := 0
	for {
		due, err := s.DueDeliveries(ctx, desk, time.Now(), 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(due) == 0 {
			return n
		}
		for _, d := range due {
			if err := s.RecordAttempt(ctx, d.ID, Attempt{Delivered: true, Status: 201, TicketID: "T-" + d.CaseID}); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
}

// BenchmarkOutboxDrain queues 10,000 outbox rows (2,000 cases: opened for
// vendor and internal, then 3 updates for vendor) and drains them with
// DueDeliveries + RecordAttempt, reporting rows per second for each phase.
// The issue asks 10,000 events to drain through the whole pipeline in
// <= 60 s, so the store must sustain well over 1,000 RecordAttempt/s.
func BenchmarkOutboxDrain(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := Open(filepath.Join(b.TempDir(), fmt.Sprint(i), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		queued := enqueue(b, s, 2000, 3, "vendor", "internal")
		enq := time.Since(start)
		start = time.Now()
		delivered := drain(b, s, "vendor") + drain(b, s, "internal")
		dr := time.Since(start)
		if queued != 10000 || delivered != queued {
			b.Fatalf("queued %d, delivered %d", queued, delivered)
		}
		counts, _ := s.OutboxCounts(context.Background())
		if len(counts) != 0 {
			b.Fatalf("left in the outbox: %v", counts)
		}
		b.ReportMetric(float64(queued)/enq.Seconds(), "enqueued-rows/s")
		b.ReportMetric(float64(delivered)/dr.Seconds(), "delivered-rows/s")
		b.ReportMetric(dr.Seconds(), "drain-s")
		s.Close()
	}
}

// BenchmarkRecordAttempt is the cost of one delivered RecordAttempt.
func BenchmarkRecordAttempt(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	desks := make([]string, 10)
	for i := range desks {
		desks[i] = fmt.Sprintf("desk%d", i)
	}
	enqueue(b, s, b.N/len(desks)+1, 0, desks...)
	due, err := s.queryDeliveries(ctx, "all", `SELECT `+deliveryCols+` FROM outbox ORDER BY id`)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.RecordAttempt(ctx, due[i].ID, Attempt{Delivered: true, Status: 200, TicketID: "T"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransition is the cost of one case event with one outbox row.
func BenchmarkTransition(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustOpenCase(b, s, sampleCase("C1", "S1"), t0, "vendor")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
			c.Occurrences++
			return rma.Event{Type: rma.EventUpdated, Actor: "agent", At: t0}, rows("vendor"), nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
