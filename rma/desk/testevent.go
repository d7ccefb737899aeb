package desk

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// TestSummary is the summary of the case a test event carries.
const TestSummary = "hsm-agent desk test: not a real case"

// TestEvent returns the clearly marked test event Test sends at now: event
// "desk.test", test: true, a case with ID "test-<UTC timestamp>" and
// TestSummary, severity 0 and no bundle.
func TestEvent(now time.Time) rma.DeskEvent {
	now = now.UTC()
	return rma.DeskEvent{
		Event:    rma.EventTest,
		Sequence: 1,
		SentAt:   now.Format(time.RFC3339),
		Test:     true,
		Case: rma.Case{
			ID:          "test-" + now.Format("20060102T150405Z"),
			Summary:     TestSummary,
			Description: "Sent by `hsm-agent desk test` to check that this desk receives hsm-agent's case events. No device is affected; nothing needs to be done.",
			State:       rma.StateOpen,
			Flow:        rma.FlowNone,
			OpenedAt:    now,
			UpdatedAt:   now,
			Due:         map[string]time.Time{},
			Seq:         1,
		},
	}
}

// Test sends a clearly marked test event (TestEvent) to d once, outside the
// outbox, and returns the desk's answer: its ticket ID, or why it failed
// (for `hsm-agent desk test NAME`).
func Test(ctx context.Context, d Desk) (ticketID string, err error) {
	ev := TestEvent(time.Now())
	payload, err := json.Marshal(ev)
	if err != nil {
		return "", fmt.Errorf("desk %q: build test event: %w", d.Name(), err)
	}
	row := rma.Delivery{
		CaseID: ev.Case.ID, Seq: ev.Sequence, Desk: d.Name(),
		IdempotencyKey: rma.IdempotencyKey(ev.Case.ID, ev.Sequence),
		Payload:        payload, State: rma.DeliveryPending,
	}
	msg, err := NewMessage(row, time.Now())
	if err != nil {
		return "", fmt.Errorf("desk %q: build test event: %w", d.Name(), err)
	}
	ticketID, _, err = d.Send(ctx, msg)
	if err != nil {
		return "", fmt.Errorf("desk %q: test event not accepted: %w", d.Name(), err)
	}
	return ticketID, nil
}
