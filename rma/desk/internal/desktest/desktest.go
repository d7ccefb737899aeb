// Package desktest is what the tests of the ticketing and pager desks
// share: a case with every fact a ticket carries, desk messages built the
// way the outbox worker builds them, and a run of the real outbox worker
// over a real SQLite store. Only tests import it.
package desktest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// Case is a severity-1 hardware case of device hsm-<id> with serial
// SN-<id> and every fact a ticket carries.
func Case(id string) rma.Case {
	return rma.Case{
		ID: id, DedupKey: "SN-" + id + "/hardware/missing", Serial: "SN-" + id, Device: "hsm-" + id,
		Fault: "missing", Kind: rma.KindHardware, Severity: 1, Tier: config.TierPremiumPlus,
		Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen, Environment: config.EnvProduction,
		Pool: "payments", Impact: "1 of 2 members healthy", Summary: "hsm-" + id + " is missing",
		Description: "not in the slot list for 3 polls", Occurrences: 1,
		OpenedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Due: map[string]time.Time{},
	}
}

// Request is an RMA request as the confirm step carries it.
func Request() map[string]any {
	return map[string]any{
		rma.RequestFirmware: "12.60.11",
		rma.RequestShipTo:   map[string]any{"address": "1 Vault Road, London", "contact": "Sam Ops", "phone": "+44 20 7946 0999", "country": "GB"},
	}
}

// Event is ev of c with the given sequence.
func Event(evType string, seq int, c rma.Case) rma.DeskEvent {
	c.Seq = seq
	return rma.DeskEvent{Event: evType, Sequence: seq, Case: c}
}

// Bundle writes a bundle file with content and returns its path.
func Bundle(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hsm-bundle.tar.gz")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Message is the desk message of ev for deskName, with the bundle at
// bundlePath ("" for none) withheld when withhold is set.
func Message(t testing.TB, deskName string, ev rma.DeskEvent, bundlePath string, withhold bool) desk.Message {
	t.Helper()
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	row := rma.Delivery{ID: int64(ev.Sequence), CaseID: ev.Case.ID, Seq: ev.Sequence, Desk: deskName,
		IdempotencyKey: rma.IdempotencyKey(ev.Case.ID, ev.Sequence), Payload: payload,
		BundlePath: bundlePath, WithholdBundle: withhold, State: rma.DeliveryPending}
	m, err := desk.NewMessage(row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Outbox opens case c with a case.opened row for d (and bundlePath) in a
// real SQLite store, runs the real outbox worker until the row is
// delivered or parked, and returns the row and the case as stored.
func Outbox(t testing.TB, d desk.Desk, c rma.Case, evType, bundlePath string) (rma.Delivery, rma.Case) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state", "hsm-agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	payload, err := json.Marshal(Event(evType, 1, c))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, Actor: rma.ActorAgent},
		[]rma.Delivery{{Desk: d.Name(), Payload: payload, BundlePath: bundlePath}}); err != nil {
		t.Fatal(err)
	}
	w := outbox.NewWorker(st, []desk.Desk{d}, outbox.Options{PollInterval: 10 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, MaxRetryAfter: 2 * time.Second})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("outbox worker: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := st.Deliveries(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].State != rma.DeliveryPending {
			got, err := st.Case(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			return ds[0], got
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox row of case %s still pending after 30s: %+v", c.ID, ds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
