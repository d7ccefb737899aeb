package zendesk_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// runOutbox opens one case with an event for desk "zd" in a real SQLite
// store and runs the outbox worker against d until the row is delivered;
// it returns the case as stored.
func runOutbox(t *testing.T, d desk.Desk) rma.Case {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(filepath.Join(t.TempDir(), "state", "hsm-agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := testCase(2)
	payload, err := json.Marshal(rma.DeskEvent{Event: rma.EventOpened, Sequence: 1, Case: c})
	if err != nil {
		t.Fatal(err)
	}
	c, err = st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, Actor: "agent"}, []rma.Delivery{{Desk: "zd", Payload: payload}})
	if err != nil {
		t.Fatal(err)
	}
	w := outbox.NewWorker(st, []desk.Desk{d}, outbox.Options{PollInterval: 10 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, MaxRetryAfter: 5 * time.Second})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := st.Deliveries(ctx, c.ID)
		if err == nil && len(ds) == 1 && ds[0].State == rma.DeliveryDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered in 30s: %+v %v", ds, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	got, err := st.Case(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestOutbox429RetryAfter: a 429 with Retry-After: 1 on the create is
// retried by the outbox worker no sooner than a second later, and one
// ticket results, kept as the case's desk reference.
func TestOutbox429RetryAfter(t *testing.T) {
	t.Parallel()
	z := newZendesk(t)
	z.beforeCreate = func(n int, w http.ResponseWriter) bool {
		if n > 0 {
			return false
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	c := runOutbox(t, newDesk(t, z))
	tickets, creates := z.snapshot()
	if len(tickets) != 1 || creates != 2 {
		t.Fatalf("%d tickets after %d creates, want 1 after 2", len(tickets), creates)
	}
	z.mu.Lock()
	gap := z.creates[1].Sub(z.creates[0])
	z.mu.Unlock()
	if gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 429 with Retry-After: 1", gap)
	}
	if c.DeskRefs["zd"] != "100" {
		t.Errorf("case desk ref %q, want 100", c.DeskRefs["zd"])
	}
}

// TestOutbox500ThenOK: a create that fails with 500 is retried by the
// outbox worker: one ticket.
func TestOutbox500ThenOK(t *testing.T) {
	t.Parallel()
	z := newZendesk(t)
	z.beforeCreate = func(n int, w http.ResponseWriter) bool {
		if n > 0 {
			return false
		}
		w.WriteHeader(http.StatusInternalServerError)
		return true
	}
	runOutbox(t, newDesk(t, z))
	tickets, creates := z.snapshot()
	if len(tickets) != 1 || creates != 2 {
		t.Fatalf("%d tickets after %d creates, want 1 after 2", len(tickets), creates)
	}
}

// TestOutboxLostAnswer: Zendesk stored the ticket but answered 500; the
// retry finds it by its external_id and creates nothing more.
func TestOutboxLostAnswer(t *testing.T) {
	t.Parallel()
	z := newZendesk(t)
	z.loseFirstAnswer = true
	c := runOutbox(t, newDesk(t, z))
	tickets, creates := z.snapshot()
	if len(tickets) != 1 || creates != 1 {
		t.Fatalf("%d tickets after %d creates, want 1 after 1", len(tickets), creates)
	}
	if c.DeskRefs["zd"] != "100" {
		t.Errorf("case desk ref %q, want 100", c.DeskRefs["zd"])
	}
}
