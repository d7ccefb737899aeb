package rma

import (
	"context"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// AutoCancelNote is the note of a hardware case the agent cancels because
// its fault cleared before the vendor confirmed it; the desks get it.
const AutoCancelNote = "fault cleared, no hardware action needed"

// checkAutoClose ends the cases whose device has stayed healthy for
// auto_close_after (Policy.AutoCloseAfter, default 1h) since the fault
// cleared (Case.ClearedAt): a flow-none case is closed, a hardware case
// the vendor has not confirmed is cancelled with AutoCancelNote, and a
// case inside an RMA flow (confirmed or later) is left to the flow. It
// runs on the engine's periodic tick; the decision rests on the stored
// ClearedAt alone, so a restart neither loses nor repeats it.
func (e *Engine) checkAutoClose(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("look for cleared cases to close", "err", err)
		return
	}
	after := e.pol.Load().AutoCloseAfter
	if after <= 0 {
		after = config.DefaultAutoCloseAfter
	}
	now := e.now()
	for _, c := range cases {
		event, note, ok := autoClose(c, after, now)
		if !ok {
			continue
		}
		got, err := e.Step(ctx, c.ID, EventInput{Event: event, Note: note}, Action{Actor: ActorAgent})
		if err != nil {
			e.logger.Error("end a cleared case", "case", c.ID, "event", event, "err", err)
			continue
		}
		e.logger.Info("cleared case ended by the agent", "case", got.ID, "device", got.Device, "state", got.State,
			"cleared_at", c.ClearedAt, "auto_close_after", after)
	}
}

// autoClose decides what ends a case whose fault cleared at c.ClearedAt,
// at time now: the event (close or cancel) and its note; ok is false when
// the case stays as it is.
func autoClose(c Case, after time.Duration, now time.Time) (event, note string, ok bool) {
	if c.State.Terminal() || c.ClearedAt.IsZero() || now.Sub(c.ClearedAt) < after {
		return "", "", false
	}
	switch {
	case flowOf(c) == FlowNone:
		return StepClose, fmt.Sprintf("the fault cleared at %s and the device stayed healthy for %s (auto_close_after): closed by the agent",
			c.ClearedAt.UTC().Format(time.RFC3339), after), true
	case c.State == StateOpen:
		return StepCancel, AutoCancelNote, true
	}
	return "", "", false
}
