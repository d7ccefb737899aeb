package rma

// Flow events applied to cases (issue 10 section 1): one path for the
// CLI (`hsm-agent case ID EVENT`), the API (POST /api/v1/cases/{id}/events),
// the agent's own events (auto-close, replacement onboarding) and the
// operator actions close and cancel. Check (flow.go) decides what is legal;
// this file records it: the case's new state, RMA number and tracking, a
// case.<state> event in the log and its outbox rows, in one transaction.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ActorAPI is the actor of events pushed through the case API.
const ActorAPI = "api"

// maxClockSkew is how far in the future an event's "at" may lie (the
// reporter's clock may run a little ahead).
const maxClockSkew = 5 * time.Minute

// Step applies one flow event (in.Event: one of Steps) to case id, as a
// (the actor, and a.At when it happened; zero means now). It is the
// package-level form of Engine.Step for processes without an engine (the
// CLI): the running daemon's outbox worker delivers the rows.
//
// Errors: ErrNotFound for an unknown case, *TerminalError (ErrTerminal)
// for an event other than note on a closed or cancelled case,
// *TransitionError (ErrIllegalEvent) for an event the case's state does
// not take, ErrMissingField for a missing or wrong field.
func Step(ctx context.Context, st Store, pol Policy, id string, in EventInput, a Action) (Case, error) {
	return applyEvent(ctx, st, pol, id, in, a, time.Now())
}

// Step applies one flow event to a case (see the package function Step),
// dated by the engine's clock, and wakes the outbox worker. The CLI, the
// API and the agent's own events (auto-close, replacement onboarding:
// EventInput{Event: StepInstall, Note: evidence} with Actor ActorAgent)
// all come here.
func (e *Engine) Step(ctx context.Context, id string, in EventInput, a Action) (Case, error) {
	c, err := applyEvent(ctx, e.st, *e.pol.Load(), id, in, a, e.now())
	return e.acted(ctx, c, err, stepEventType(in.Event, c.State))
}

// stepEventType is the case event a flow event records, for the metric.
func stepEventType(event string, to State) string {
	switch event {
	case StepApprove:
		return EventBundleApproved
	case StepNote:
		return EventNote
	}
	return StateEvent(to)
}

func applyEvent(ctx context.Context, st Store, pol Policy, id string, in EventInput, a Action, now time.Time) (Case, error) {
	if a.Actor == "" {
		a.Actor = OperatorActor("")
	}
	given := !a.At.IsZero()
	if !given {
		a.At = now
	}
	in = trimInput(in)
	if in.Note == "" {
		in.Note = a.Note
	}
	a.Note = in.Note
	c, err := lookup(ctx, st, id, true)
	if err != nil {
		return Case{}, err
	}
	if err := checkStep(c, in, pol, a.At, now, given); err != nil {
		return Case{}, err
	}
	switch in.Event {
	case StepApprove:
		return ApproveBundle(ctx, st, pol, id, a)
	case StepNote:
		if err := AddNote(ctx, st, id, a); err != nil {
			return Case{}, err
		}
		return st.Case(ctx, id)
	}
	return applyStep(ctx, st, pol, c, in, a, now)
}

// trimInput drops the blanks around every field.
func trimInput(in EventInput) EventInput {
	return EventInput{Event: strings.TrimSpace(in.Event), RMA: strings.TrimSpace(in.RMA), Tracking: strings.TrimSpace(in.Tracking),
		Attest: strings.TrimSpace(in.Attest), Note: strings.TrimSpace(in.Note)}
}

// checkStep decides whether case c takes the event at time at: the
// flow's rule (Check), a terminal case taking only notes, and a time
// given (given) neither before the case opened nor in the future.
func checkStep(c Case, in EventInput, pol Policy, at, now time.Time, given bool) error {
	_, err := nextState(c, in, pol)
	if err != nil {
		return err
	}
	switch {
	case !given:
	case at.After(now.Add(maxClockSkew)):
		return fmt.Errorf("case %s: event %s: at %s is in the future (now %s); give when it happened (--at RFC3339, API field \"at\"): %w",
			c.ID, in.Event, at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrMissingField)
	case at.Before(c.OpenedAt.Truncate(time.Second)):
		return fmt.Errorf("case %s: event %s: at %s is before the case opened (%s); give when it happened (--at RFC3339, API field \"at\"): %w",
			c.ID, in.Event, at.UTC().Format(time.RFC3339), c.OpenedAt.UTC().Format(time.RFC3339), ErrMissingField)
	}
	return nil
}

// nextState is Check for a stored case: an older case without a flow
// follows flow none, and a closed or cancelled case refuses every flow
// event but a note with a *TerminalError.
func nextState(c Case, in EventInput, pol Policy) (State, error) {
	if c.State.Terminal() && in.Event != StepNote && slices.Contains(Steps(), in.Event) {
		return "", &TerminalError{ID: c.ID, State: c.State, At: c.ClosedAt}
	}
	to, err := Check(flowOf(c), c.State, in, pol.RequireAttest)
	if err != nil {
		return "", fmt.Errorf("case %s: %w", c.ID, err)
	}
	return to, nil
}

// flowOf is the case's flow; none for a case stored before flows.
func flowOf(c Case) Flow {
	if c.Flow == "" {
		return FlowNone
	}
	return c.Flow
}

// applyStep records a state-changing event (the flow's, close, cancel):
// the new state, RMA number and tracking on the case, the case.<state>
// event with everything it carried, and a row for each of the case's
// desks (its vendor desks, every internal desk) with the whole case. The
// event is checked again on the case as the transaction reads it, so a
// concurrent change (the daemon and the CLI) is never overwritten.
func applyStep(ctx context.Context, st Store, pol Policy, prev Case, in EventInput, a Action, now time.Time) (Case, error) {
	have, _, err := deskSet(ctx, st, prev.ID)
	if err != nil {
		return Case{}, err
	}
	var request map[string]any
	if (in.Event == StepConfirm || in.Event == StepAuthorize) && flowOf(prev) != FlowNone {
		evs, err := st.Events(ctx, prev.ID)
		if err != nil {
			return Case{}, err
		}
		request = RMARequest(prev, pol.device(prev.Device, prev.Serial), fleetFirmwareOf(evs))
	}
	c, err := st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		to, err := nextState(*c, in, pol)
		if err != nil {
			return Event{}, nil, err
		}
		rec := StepRecord{Event: in.Event, From: c.State, Actor: a.Actor, At: a.At.UTC(), RecordedAt: now.UTC(),
			RMA: in.RMA, Tracking: in.Tracking, Attest: in.Attest, Note: in.Note, Request: request}
		c.State = to
		if in.RMA != "" {
			c.RMANumber = in.RMA
		}
		if in.Tracking != "" {
			c.Tracking = in.Tracking
		}
		if to.Terminal() {
			c.ClosedAt = a.At
			delete(c.Due, DuePage) // the case is in hand
		}
		evType := StateEvent(to)
		rows, err := outbox(targets(pol, *c, evType, have), after(*c, a.At), evType, nil, "", a.At)
		if err == nil {
			rows, err = withStep(rows, rec)
		}
		data, _ := json.Marshal(rec)
		return Event{Type: evType, At: a.At, Actor: a.Actor, Note: in.Note, Data: data}, rows, err
	})
	if err != nil {
		return Case{}, fmt.Errorf("%s case %s: %w", in.Event, prev.ID, err)
	}
	return c, nil
}

// withStep adds the flow event to each row's desk event.
func withStep(rows []Delivery, rec StepRecord) ([]Delivery, error) {
	for i := range rows {
		var ev DeskEvent
		if err := json.Unmarshal(rows[i].Payload, &ev); err != nil {
			return nil, fmt.Errorf("desk event for desk %s: %w", rows[i].Desk, err)
		}
		ev.Step = &rec
		p, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode %s event for desk %s: %w", ev.Event, rows[i].Desk, err)
		}
		rows[i].Payload = p
	}
	return rows, nil
}
