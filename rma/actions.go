package rma

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// Store is the part of the case store (package rma/store, whose *Store
// implements it) that the engine and the operator actions use. Errors
// wrap the store's sentinel errors; Transition passes on an error of fn
// wrapped, so fn may return ErrNoChange from this package.
type Store interface {
	OpenCase(ctx context.Context, c Case, ev Event, out []Delivery) (Case, error)
	Transition(ctx context.Context, caseID string, fn func(c *Case) (Event, []Delivery, error)) (Case, error)
	Case(ctx context.Context, id string) (Case, error)
	CaseByKey(ctx context.Context, dedupKey string) (Case, bool, error)
	Cases(ctx context.Context, openOnly bool) ([]Case, error)
	Events(ctx context.Context, caseID string) ([]Event, error)
	Deliveries(ctx context.Context, caseID string) ([]Delivery, error)
	LogEvent(ctx context.Context, ev Event) error
	ReleaseBundles(ctx context.Context, caseID string) error
	RecordSerial(ctx context.Context, device, serial string, at time.Time) (changed bool, err error)
	RecordSlot(ctx context.Context, device string, seen SlotSeen, at time.Time) error
}

// SlotSeen is where a device's token was read: its serial, module, slot ID
// and label. After a restart it lets the probe name a token whose serial
// cannot be read by the slot it was last read in.
type SlotSeen struct {
	Serial string `json:"serial"`
	Module string `json:"module"`
	SlotID uint   `json:"slot_id"`
	Label  string `json:"label"`
}

// Errors of the operator actions and the engine, for errors.Is.
var (
	// ErrNoChange: a Transition fn has nothing to write (store.ErrNoChange
	// is this error).
	ErrNoChange = errors.New("no change")
	// ErrNotFound: no case with that ID (store.ErrNotFound is this error).
	ErrNotFound = errors.New("not found")
	// ErrTerminal: the case is closed or cancelled and takes no further action.
	ErrTerminal = errors.New("the case is closed or cancelled")
)

// TerminalError reports an action on a closed or cancelled case.
type TerminalError struct {
	ID    string
	State State
	At    time.Time
}

// Error implements error.
func (e *TerminalError) Error() string {
	when := ""
	if !e.At.IsZero() {
		when = " at " + e.At.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("case %s was already %s%s: closed and cancelled cases take no further action", e.ID, e.State, when)
}

// Is makes errors.Is(err, ErrTerminal) true.
func (e *TerminalError) Is(target error) bool { return target == ErrTerminal }

// Action is who performs an operator action, when and why.
type Action struct {
	// Actor is OperatorActor(user); empty means "operator".
	Actor string
	// Note is the operator's comment, kept on the event.
	Note string
	// At is when; zero means now.
	At time.Time
}

func (a Action) normal() Action {
	if a.Actor == "" {
		a.Actor = OperatorActor("")
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	return a
}

// lookup loads a case for an action, with a clear error for an unknown ID
// and, unless terminalOK, for a closed or cancelled case.
func lookup(ctx context.Context, st Store, id string, terminalOK bool) (Case, error) {
	c, err := st.Case(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Case{}, fmt.Errorf("no case with ID %q; `hsm-agent cases` lists the cases: %w", id, err)
		}
		return Case{}, fmt.Errorf("case %s: %w", id, err)
	}
	if !terminalOK && c.State.Terminal() {
		return Case{}, &TerminalError{ID: c.ID, State: c.State, At: c.ClosedAt}
	}
	return c, nil
}

// deskSet lists the desks that have outbox rows of a case, and the path of
// its latest bundle.
func deskSet(ctx context.Context, st Store, id string) (have map[string]bool, bundle string, err error) {
	dels, err := st.Deliveries(ctx, id)
	if err != nil {
		return nil, "", fmt.Errorf("deliveries of case %s: %w", id, err)
	}
	have = map[string]bool{}
	for _, d := range dels {
		have[d.Desk] = true
		if d.BundlePath != "" {
			bundle = d.BundlePath
		}
	}
	return have, bundle, nil
}

// CloseCase closes a case: its desks (the vendor desks that have it and
// every internal desk) get a case.closed event. Unknown IDs and closed or
// cancelled cases are errors; closing a case inside an RMA flow needs a
// note (Check). It is Step with the event close, so the daemon and the CLI
// both use it; the daemon's outbox worker delivers the rows.
func CloseCase(ctx context.Context, st Store, pol Policy, id string, a Action) (Case, error) {
	return Step(ctx, st, pol, id, EventInput{Event: StepClose, Note: a.Note}, a)
}

// CancelCase cancels a case (the operator stops the automated case); like
// CloseCase otherwise.
func CancelCase(ctx context.Context, st Store, pol Policy, id string, a Action) (Case, error) {
	return Step(ctx, st, pol, id, EventInput{Event: StepCancel, Note: a.Note}, a)
}

// ApproveBundle releases a case's diagnostics bundle to the desks with
// upload: approve: rows still pending get their bundle back
// (store.ReleaseBundles), and those desks get a case.approved event that
// carries the bundle, in case they already received the case without it.
func ApproveBundle(ctx context.Context, st Store, pol Policy, id string, a Action) (Case, error) {
	a = a.normal()
	if _, err := lookup(ctx, st, id, false); err != nil {
		return Case{}, err
	}
	have, bundle, err := deskSet(ctx, st, id)
	if err != nil {
		return Case{}, err
	}
	if bundle == "" {
		return Case{}, fmt.Errorf("approve case %s: the case has no diagnostics bundle to release (`hsm-agent bundle SERIAL` builds one on demand)", id)
	}
	var desks []Desk
	for _, d := range pol.Desks {
		if d.ApproveUpload && d.Role != config.RolePager && have[d.Name] {
			desks = append(desks, d)
		}
	}
	c, err := st.Transition(ctx, id, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, &TerminalError{ID: c.ID, State: c.State, At: c.ClosedAt}
		}
		if c.BundleApproved {
			return Event{}, nil, ErrNoChange
		}
		c.BundleApproved = true
		ev := Event{Type: EventBundleApproved, At: a.At, Actor: a.Actor, Note: a.Note,
			Data: eventData(map[string]any{"bundle": bundle})}
		rows, err := outbox(desks, after(*c, a.At), EventBundleApproved, nil, bundle, a.At)
		return ev, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return Case{}, fmt.Errorf("approve case %s: its bundle is already approved", id)
	}
	if err != nil {
		return Case{}, fmt.Errorf("approve case %s: %w", id, err)
	}
	if err := st.ReleaseBundles(ctx, id); err != nil {
		return c, fmt.Errorf("approve case %s: approval recorded, but releasing the withheld bundles failed (run approve again): %w", id, err)
	}
	return c, nil
}

// AddNote appends an operator's note to a case's log (a log-only event;
// notes are allowed on closed and cancelled cases too, for the record).
func AddNote(ctx context.Context, st Store, id string, a Action) error {
	a = a.normal()
	if strings.TrimSpace(a.Note) == "" {
		return fmt.Errorf("note on case %s: the note is empty; say what to record with --note", id)
	}
	if _, err := lookup(ctx, st, id, true); err != nil {
		return err
	}
	if err := st.LogEvent(ctx, Event{CaseID: id, Type: EventNote, At: a.At, Actor: a.Actor, Note: a.Note}); err != nil {
		return fmt.Errorf("note on case %s: %w", id, err)
	}
	return nil
}

// CloseCase closes a case as an operator (see the package function) and
// wakes the outbox worker.
func (e *Engine) CloseCase(ctx context.Context, id string, a Action) (Case, error) {
	return e.Step(ctx, id, EventInput{Event: StepClose, Note: a.Note}, a)
}

// CancelCase cancels a case as an operator and wakes the outbox worker.
func (e *Engine) CancelCase(ctx context.Context, id string, a Action) (Case, error) {
	return e.Step(ctx, id, EventInput{Event: StepCancel, Note: a.Note}, a)
}

// ApproveBundle releases a case's bundle as an operator and wakes the
// outbox worker.
func (e *Engine) ApproveBundle(ctx context.Context, id string, a Action) (Case, error) {
	c, err := ApproveBundle(ctx, e.st, *e.pol.Load(), id, e.action(a))
	return e.acted(ctx, c, err, EventBundleApproved)
}

// AddNote appends an operator's note to a case's log.
func (e *Engine) AddNote(ctx context.Context, id string, a Action) error {
	if err := AddNote(ctx, e.st, id, e.action(a)); err != nil {
		return err
	}
	e.m.events.WithLabelValues(EventNote).Inc()
	return nil
}

// action dates an operator action by the engine's clock.
func (e *Engine) action(a Action) Action {
	if a.At.IsZero() {
		a.At = e.now()
	}
	return a
}

func (e *Engine) acted(ctx context.Context, c Case, err error, evType string) (Case, error) {
	if err != nil {
		return c, err
	}
	e.committed(ctx, evType)
	return c, nil
}
