package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hsm-agent/hsm-agent/rma"
)

const caseCols = `id, dedup_key, serial, device, fault, kind, severity, tier, flow, state,
	environment, pool, summary, description, opened_at, updated_at, closed_at, rma_number,
	due, impact, reason, held, occurrences, desk_refs, seq, bundle_approved, tracking, cleared_at,
	model, firmware, contract_id`

// openCaseStates is the SQL form of !rma.State.Terminal (see the unique
// index cases_open_dedup_key).
const openCaseStates = `state NOT IN ('closed', 'cancelled')`

// OpenCase writes a new case, its first event (Seq 1) and that event's
// outbox rows in one transaction. The caller sets c.ID and c.DedupKey;
// c.Seq becomes 1, an empty c.State becomes open, a zero ev.At becomes
// now, zero c.OpenedAt and c.UpdatedAt become ev.At. Each Delivery gets
// CaseID, Seq 1, its IdempotencyKey, State pending, Attempts 0, CreatedAt
// ev.At and, when zero, NextAttempt ev.At (due at once).
//
// It returns ErrDuplicate (wrapped, naming the open case) if a
// non-terminal case with the same DedupKey exists, in this process or
// another: a unique partial index enforces it.
func (s *Store) OpenCase(ctx context.Context, c rma.Case, ev rma.Event, out []rma.Delivery) (rma.Case, error) {
	if c.ID == "" || c.DedupKey == "" {
		return rma.Case{}, fmt.Errorf("state DB %s: open case: the case needs an ID and a dedup key (ID %q, dedup key %q)", s.path, c.ID, c.DedupKey)
	}
	if ev.At.IsZero() {
		ev.At = now()
	}
	if c.State == "" {
		c.State = rma.StateOpen
	}
	if c.OpenedAt.IsZero() {
		c.OpenedAt = ev.At
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = ev.At
	}
	c.Seq = 1
	ev.CaseID, ev.Seq = c.ID, 1
	if err := s.checkEvent(ev); err != nil {
		return rma.Case{}, err
	}
	op := "open case " + c.ID
	err := s.write(ctx, op, func(tx *wtx) error {
		var other string
		err := tx.queryRow(ctx, `SELECT id FROM cases WHERE dedup_key = ? AND `+openCaseStates, c.DedupKey).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("case %s (%s): %w: case %s", c.ID, c.DedupKey, ErrDuplicate, other)
		case !errors.Is(err, sql.ErrNoRows):
			return s.fail(op, err)
		}
		if err := s.insertCase(ctx, tx, c); err != nil {
			return err
		}
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		return s.insertDeliveries(ctx, tx, c.ID, 1, ev.At, out)
	})
	if err != nil {
		return rma.Case{}, err
	}
	return c, nil
}

// Transition changes one case in one transaction: it loads the case,
// calls fn with a copy, and writes the mutated case, the event fn returns
// and its outbox rows. The store sets ev.CaseID, ev.Seq = c.Seq+1,
// c.Seq = ev.Seq and c.UpdatedAt = ev.At (a zero ev.At becomes now), and
// fills the outbox rows as OpenCase does.
//
// If fn returns ErrNoChange, nothing is written and Transition returns the
// unchanged case with ErrNoChange; any other error from fn is returned
// (wrapped) with nothing written. fn runs inside the write transaction: it
// must be quick and must not call the Store. A state change that would
// give the dedup key a second non-terminal case returns ErrDuplicate.
func (s *Store) Transition(ctx context.Context, caseID string, fn func(c *rma.Case) (rma.Event, []rma.Delivery, error)) (rma.Case, error) {
	op := "transition case " + caseID
	var result rma.Case
	var noChange bool
	err := s.write(ctx, op, func(tx *wtx) error {
		orig, err := s.loadCase(ctx, tx, caseID)
		if err != nil {
			return err
		}
		c := cloneCase(orig)
		ev, out, err := fn(&c)
		if errors.Is(err, ErrNoChange) {
			result, noChange = orig, true
			return err
		}
		if err != nil {
			return fmt.Errorf("case %s: %w", caseID, err)
		}
		if c.ID != orig.ID {
			return fmt.Errorf("state DB %s: %s: fn changed the case ID to %q", s.path, op, c.ID)
		}
		if ev.At.IsZero() {
			ev.At = now()
		}
		ev.CaseID = caseID
		ev.Seq = orig.Seq + 1
		c.Seq = ev.Seq
		c.UpdatedAt = ev.At
		if err := s.checkEvent(ev); err != nil {
			return err
		}
		if err := s.updateCase(ctx, tx, c); err != nil {
			return err
		}
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		if err := s.insertDeliveries(ctx, tx, caseID, ev.Seq, ev.At, out); err != nil {
			return err
		}
		result = c
		return nil
	})
	if noChange {
		return result, ErrNoChange
	}
	if err != nil {
		return rma.Case{}, err
	}
	return result, nil
}

// Case returns one case, or ErrNotFound.
func (s *Store) Case(ctx context.Context, id string) (rma.Case, error) {
	return s.loadCase(ctx, s, id)
}

// CaseByKey returns the most recently opened case with that dedup key, in
// any state; false if there is none.
func (s *Store) CaseByKey(ctx context.Context, dedupKey string) (rma.Case, bool, error) {
	row := s.queryRow(ctx, `SELECT `+caseCols+` FROM cases WHERE dedup_key = ?
		ORDER BY opened_at DESC, rowid DESC LIMIT 1`, dedupKey)
	c, err := s.scanCase(row)
	if errors.Is(err, sql.ErrNoRows) {
		return rma.Case{}, false, nil
	}
	if err != nil {
		return rma.Case{}, false, s.fail("case by key "+dedupKey, err)
	}
	return c, true, nil
}

// Cases lists the readable cases, newest (by OpenedAt) first; openOnly
// leaves out closed and cancelled ones. A row that cannot be read is left
// out (CaseList reports it), so one damaged row never hides the others.
func (s *Store) Cases(ctx context.Context, openOnly bool) ([]rma.Case, error) {
	cases, _, err := s.CaseList(ctx, openOnly)
	return cases, err
}

// UnreadableCase is a case row that cannot be read (damaged, or edited by
// hand): its ID and what is wrong with it (an ErrUnreadableRow).
type UnreadableCase struct {
	ID  string
	Err error
}

// CaseList is Cases that also returns the rows it left out because they
// cannot be read, each with its case ID and the reason. err is for the
// listing itself (the database cannot be queried).
func (s *Store) CaseList(ctx context.Context, openOnly bool) (cases []rma.Case, bad []UnreadableCase, err error) {
	q := `SELECT ` + caseCols + ` FROM cases`
	if openOnly {
		q += ` WHERE ` + openCaseStates
	}
	q += ` ORDER BY opened_at DESC, rowid DESC`
	rows, err := s.query(ctx, q)
	if err != nil {
		return nil, nil, s.fail("list cases", err)
	}
	defer rows.Close()
	cases = []rma.Case{}
	for rows.Next() {
		c, err := s.scanCase(rows)
		var re *rowError
		switch {
		case errors.As(err, &re):
			bad = append(bad, UnreadableCase{ID: re.id, Err: err})
		case err != nil:
			return nil, nil, s.fail("list cases", err)
		default:
			cases = append(cases, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.fail("list cases", err)
	}
	return cases, bad, nil
}

// Events returns a case's log in the order it was written, log-only rows
// (Seq 0) included; empty for an unknown case.
func (s *Store) Events(ctx context.Context, caseID string) ([]rma.Event, error) {
	rows, err := s.query(ctx, `SELECT case_id, seq, type, at, actor, note, data
		FROM case_events WHERE case_id = ? ORDER BY id`, caseID)
	if err != nil {
		return nil, s.fail("events of case "+caseID, err)
	}
	defer rows.Close()
	out := []rma.Event{}
	for rows.Next() {
		var ev rma.Event
		var at string
		var data sql.NullString
		if err := rows.Scan(&ev.CaseID, &ev.Seq, &ev.Type, &at, &ev.Actor, &ev.Note, &data); err != nil {
			return nil, s.fail("events of case "+caseID, err)
		}
		if ev.At, err = parseTime(at); err != nil {
			return nil, s.fail("events of case "+caseID, err)
		}
		if data.Valid {
			ev.Data = json.RawMessage(data.String)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("events of case "+caseID, err)
	}
	return out, nil
}

// LogEvent appends a log-only row (Seq 0) to a case's log: an operator's
// note, a delivery attempt. It does not change the case. ErrNotFound if
// the case does not exist.
func (s *Store) LogEvent(ctx context.Context, ev rma.Event) error {
	if ev.Seq != 0 {
		return fmt.Errorf("state DB %s: log event on case %s: Seq is %d; LogEvent writes log-only rows (Seq 0), use Transition for case events", s.path, ev.CaseID, ev.Seq)
	}
	if ev.At.IsZero() {
		ev.At = now()
	}
	if err := s.checkEvent(ev); err != nil {
		return err
	}
	op := "log event on case " + ev.CaseID
	return s.write(ctx, op, func(tx *wtx) error {
		if err := s.caseExists(ctx, tx, ev.CaseID); err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, ev)
	})
}

// checkEvent validates what the schema would refuse with a less helpful
// message.
func (s *Store) checkEvent(ev rma.Event) error {
	switch {
	case ev.Type == "":
		return fmt.Errorf("state DB %s: event %d of case %s has no type", s.path, ev.Seq, ev.CaseID)
	case ev.Actor == "":
		return fmt.Errorf("state DB %s: event %s of case %s has no actor (agent, operator[:USER] or desk:NAME)", s.path, ev.Type, ev.CaseID)
	case len(ev.Data) > 0 && !json.Valid(ev.Data):
		return fmt.Errorf("state DB %s: event %s of case %s: Data is not valid JSON", s.path, ev.Type, ev.CaseID)
	}
	return nil
}

func (s *Store) caseExists(ctx context.Context, tx *wtx, id string) error {
	var one int
	err := tx.queryRow(ctx, `SELECT 1 FROM cases WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("case %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return s.fail("case "+id, err)
	}
	return nil
}

func (s *Store) insertEvent(ctx context.Context, tx *wtx, ev rma.Event) error {
	var data any
	if len(ev.Data) > 0 {
		data = string(ev.Data)
	}
	_, err := tx.exec(ctx, `INSERT INTO case_events (case_id, seq, type, at, actor, note, data)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, ev.CaseID, ev.Seq, ev.Type, fmtTime(ev.At), ev.Actor, ev.Note, data)
	if err != nil {
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return fmt.Errorf("state DB %s: case %s already has an event with sequence %d: %w", s.path, ev.CaseID, ev.Seq, err)
		}
		return s.fail(fmt.Sprintf("case %s: write event %s", ev.CaseID, ev.Type), err)
	}
	return nil
}

func (s *Store) insertCase(ctx context.Context, tx *wtx, c rma.Case) error {
	args, err := caseArgs(c)
	if err != nil {
		return fmt.Errorf("state DB %s: case %s: %w", s.path, c.ID, err)
	}
	_, err = tx.exec(ctx, `INSERT INTO cases (`+caseCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
		return fmt.Errorf("state DB %s: a case with ID %s already exists", s.path, c.ID)
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("case %s (%s): %w", c.ID, c.DedupKey, ErrDuplicate)
	case err != nil:
		return s.fail("write case "+c.ID, err)
	}
	return nil
}

func (s *Store) updateCase(ctx context.Context, tx *wtx, c rma.Case) error {
	args, err := caseArgs(c)
	if err != nil {
		return fmt.Errorf("state DB %s: case %s: %w", s.path, c.ID, err)
	}
	_, err = tx.exec(ctx, `UPDATE cases SET dedup_key = ?2, serial = ?3, device = ?4, fault = ?5,
		kind = ?6, severity = ?7, tier = ?8, flow = ?9, state = ?10, environment = ?11, pool = ?12,
		summary = ?13, description = ?14, opened_at = ?15, updated_at = ?16, closed_at = ?17,
		rma_number = ?18, due = ?19, impact = ?20, reason = ?21, held = ?22, occurrences = ?23,
		desk_refs = ?24, seq = ?25, bundle_approved = ?26, tracking = ?27, cleared_at = ?28,
		model = ?29, firmware = ?30, contract_id = ?31 WHERE id = ?1`, args...)
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return fmt.Errorf("case %s (%s, state %s): %w", c.ID, c.DedupKey, c.State, ErrDuplicate)
	case err != nil:
		return s.fail("write case "+c.ID, err)
	}
	return nil
}

func caseArgs(c rma.Case) ([]any, error) {
	due, err := jsonDue(c.Due)
	if err != nil {
		return nil, fmt.Errorf("due: %w", err)
	}
	refs, err := json.Marshal(c.DeskRefs)
	if err != nil {
		return nil, fmt.Errorf("desk refs: %w", err)
	}
	return []any{c.ID, c.DedupKey, c.Serial, c.Device, c.Fault, string(c.Kind), c.Severity, c.Tier,
		string(c.Flow), string(c.State), c.Environment, c.Pool, c.Summary, c.Description,
		fmtTime(c.OpenedAt), fmtTime(c.UpdatedAt), fmtTimeNull(c.ClosedAt), c.RMANumber,
		due, c.Impact, c.Reason, boolInt(c.Held), c.Occurrences, string(refs), c.Seq,
		boolInt(c.BundleApproved), c.Tracking, fmtTimeNull(c.ClearedAt), c.Model, c.Firmware, c.ContractID}, nil
}

// jsonDue stores the clocks in UTC so that they read back equal.
func jsonDue(due map[string]time.Time) (string, error) {
	if due == nil {
		return "null", nil
	}
	utc := make(map[string]time.Time, len(due))
	for k, v := range due {
		utc[k] = v.UTC()
	}
	b, err := json.Marshal(utc)
	return string(b), err
}

type scanner interface{ Scan(dest ...any) error }

// rowQuerier is a *Store (outside a transaction) or a *wtx.
type rowQuerier interface {
	queryRow(ctx context.Context, query string, args ...any) scanner
}

func (s *Store) loadCase(ctx context.Context, q rowQuerier, id string) (rma.Case, error) {
	c, err := s.scanCase(q.queryRow(ctx, `SELECT `+caseCols+` FROM cases WHERE id = ?`, id))
	var re *rowError
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return rma.Case{}, fmt.Errorf("case %s: %w", id, ErrNotFound)
	case errors.As(err, &re):
		return rma.Case{}, err
	case err != nil:
		return rma.Case{}, s.fail("read case "+id, err)
	}
	return c, nil
}

// scanCase reads one case row. A row whose columns cannot be converted
// (a damaged or hand-edited row) is a *rowError naming the case, wrapping
// ErrUnreadableRow.
func (s *Store) scanCase(r scanner) (rma.Case, error) {
	var c rma.Case
	var kind, flow, state, opened, updated, due, refs string
	var closed, cleared sql.NullString
	var held, approved int
	err := r.Scan(&c.ID, &c.DedupKey, &c.Serial, &c.Device, &c.Fault, &kind, &c.Severity, &c.Tier,
		&flow, &state, &c.Environment, &c.Pool, &c.Summary, &c.Description, &opened, &updated,
		&closed, &c.RMANumber, &due, &c.Impact, &c.Reason, &held, &c.Occurrences, &refs, &c.Seq,
		&approved, &c.Tracking, &cleared, &c.Model, &c.Firmware, &c.ContractID)
	// Scan fills the columns in order, so the ID (the first) is known
	// even when a later column fails.
	bad := func(err error) (rma.Case, error) {
		return rma.Case{}, &rowError{path: s.path, id: c.ID, err: err}
	}
	switch {
	case err != nil && strings.HasPrefix(err.Error(), scanConversionError):
		return bad(err)
	case err != nil:
		return rma.Case{}, err // no row, or the query failed
	}
	c.Kind, c.Flow, c.State = rma.Kind(kind), rma.Flow(flow), rma.State(state)
	c.Held, c.BundleApproved = held != 0, approved != 0
	if c.OpenedAt, err = parseTime(opened); err != nil {
		return bad(fmt.Errorf("opened_at: %w", err))
	}
	if c.UpdatedAt, err = parseTime(updated); err != nil {
		return bad(fmt.Errorf("updated_at: %w", err))
	}
	if c.ClosedAt, err = parseTimeNull(closed); err != nil {
		return bad(fmt.Errorf("closed_at: %w", err))
	}
	if c.ClearedAt, err = parseTimeNull(cleared); err != nil {
		return bad(fmt.Errorf("cleared_at: %w", err))
	}
	if err := json.Unmarshal([]byte(due), &c.Due); err != nil {
		return bad(fmt.Errorf("bad due JSON: %w", err))
	}
	for k, v := range c.Due {
		c.Due[k] = v.UTC()
	}
	if err := json.Unmarshal([]byte(refs), &c.DeskRefs); err != nil {
		return bad(fmt.Errorf("bad desk_refs JSON: %w", err))
	}
	return c, nil
}

// ErrUnreadableRow: one row of the state DB cannot be read (damaged, or
// edited by hand); the other rows are fine.
var ErrUnreadableRow = errors.New("the database row is unreadable")

// rowError is an unreadable case row.
type rowError struct {
	path, id string
	err      error
}

func (e *rowError) Error() string {
	return fmt.Sprintf("state DB %s: case %s: %v: %v; the other cases are not affected. Restore the state DB from a backup, or correct the row with sqlite3 (table cases, id %s)",
		e.path, e.id, ErrUnreadableRow, e.err, e.id)
}

// Unwrap returns ErrUnreadableRow and the cause.
func (e *rowError) Unwrap() []error { return []error{ErrUnreadableRow, e.err} }

// scanConversionError starts the error of database/sql's Scan when a
// column's value does not convert to its Go type (e.g. text in an integer
// column): the row, not the query, is at fault.
const scanConversionError = "sql: Scan error on column"

// cloneCase copies the maps so that fn's changes never reach the loaded
// case.
func cloneCase(c rma.Case) rma.Case {
	c.Due = maps.Clone(c.Due)
	c.DeskRefs = maps.Clone(c.DeskRefs)
	return c
}

// isConstraint reports whether err is the SQLite extended constraint code.
func isConstraint(err error, code int) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == code
}
