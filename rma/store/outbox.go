package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hsm-agent/hsm-agent/rma"
)

// Attempt is the outcome of one delivery attempt of an outbox row.
type Attempt struct {
	At time.Time // when the attempt ended; zero means now
	// Delivered: the desk accepted the event (2xx). Parked: it refused it
	// for good (a non-retryable answer); the row is kept and shown as
	// failed. Neither: retry at NextAttempt (zero means at once).
	Delivered bool
	Parked    bool
	Status    int    // HTTP status, 0 when there was no answer
	Err       string // the error, "" on success
	TicketID  string // the desk's ticket ID from a 2xx reply, if any
	// NextAttempt is when to retry (pending rows only).
	NextAttempt time.Time
}

// Outcome names the attempt's result: delivered, parked or retry.
func (a Attempt) Outcome() string {
	switch {
	case a.Delivered:
		return "delivered"
	case a.Parked:
		return "parked"
	default:
		return "retry"
	}
}

// OutboxCount is the number of undelivered outbox rows of one desk.
type OutboxCount struct {
	Pending int `json:"pending"`
	Parked  int `json:"parked"`
}

// deliveryData is the Data of the log-only rma.EventDelivery event that
// RecordAttempt appends to the case log.
type deliveryData struct {
	DeliveryID     int64     `json:"delivery_id"`
	Desk           string    `json:"desk"`
	Sequence       int       `json:"sequence"`
	IdempotencyKey string    `json:"idempotency_key"`
	Attempt        int       `json:"attempt"`
	Outcome        string    `json:"outcome"`
	Status         int       `json:"status,omitempty"`
	Error          string    `json:"error,omitempty"`
	TicketID       string    `json:"ticket_id,omitempty"`
	NextAttempt    time.Time `json:"next_attempt,omitzero"`
}

const deliveryCols = `id, case_id, seq, desk, idempotency_key, payload, bundle_path, withhold_bundle,
	state, attempts, next_attempt, last_error, ticket_id, created_at, delivered_at`

// insertDeliveries writes the outbox rows of one case event.
func (s *Store) insertDeliveries(ctx context.Context, tx *wtx, caseID string, seq int, at time.Time, out []rma.Delivery) error {
	if len(out) == 0 {
		return nil
	}
	key := rma.IdempotencyKey(caseID, seq)
	for _, d := range out {
		if d.Desk == "" {
			return fmt.Errorf("state DB %s: case %s event %d: an outbox row has no desk", s.path, caseID, seq)
		}
		if len(d.Payload) > 0 && !json.Valid(d.Payload) {
			return fmt.Errorf("state DB %s: case %s event %d: the payload for desk %s is not valid JSON", s.path, caseID, seq, d.Desk)
		}
		next := d.NextAttempt
		if next.IsZero() {
			next = at
		}
		_, err := tx.exec(ctx, `INSERT INTO outbox (case_id, seq, desk, idempotency_key, payload,
			bundle_path, withhold_bundle, state, attempts, next_attempt, last_error, ticket_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, '', '', ?)`, caseID, seq, d.Desk, key, string(d.Payload), d.BundlePath,
			boolInt(d.WithholdBundle), fmtTime(next), fmtTime(at))
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return fmt.Errorf("state DB %s: case %s event %d is already queued for desk %s", s.path, caseID, seq, d.Desk)
		}
		if err != nil {
			return s.fail(fmt.Sprintf("case %s: write outbox row for desk %s", caseID, d.Desk), err)
		}
	}
	return nil
}

// Deliveries returns a case's outbox rows in the order they were queued;
// empty for an unknown case.
func (s *Store) Deliveries(ctx context.Context, caseID string) ([]rma.Delivery, error) {
	return s.queryDeliveries(ctx, "deliveries of case "+caseID,
		`SELECT `+deliveryCols+` FROM outbox WHERE case_id = ? ORDER BY id`, caseID)
}

// DueDeliveries returns up to limit (all if limit <= 0) pending rows of a
// desk whose NextAttempt is at or before now, oldest (first queued) first.
func (s *Store) DueDeliveries(ctx context.Context, desk string, now time.Time, limit int) ([]rma.Delivery, error) {
	if limit <= 0 {
		limit = -1
	}
	return s.queryDeliveries(ctx, "due deliveries for desk "+desk,
		`SELECT `+deliveryCols+` FROM outbox WHERE desk = ? AND state = 'pending' AND next_attempt <= ?
		ORDER BY id LIMIT ?`, desk, fmtTime(now), limit)
}

func (s *Store) queryDeliveries(ctx context.Context, op, q string, args ...any) ([]rma.Delivery, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	out := []rma.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

func scanDelivery(r scanner) (rma.Delivery, error) {
	var d rma.Delivery
	var payload, next, created string
	var withhold int
	var delivered sql.NullString
	err := r.Scan(&d.ID, &d.CaseID, &d.Seq, &d.Desk, &d.IdempotencyKey, &payload, &d.BundlePath,
		&withhold, &d.State, &d.Attempts, &next, &d.LastError, &d.TicketID, &created, &delivered)
	if err != nil {
		return rma.Delivery{}, err
	}
	if payload != "" {
		d.Payload = json.RawMessage(payload)
	}
	d.WithholdBundle = withhold != 0
	if d.NextAttempt, err = parseTime(next); err != nil {
		return rma.Delivery{}, err
	}
	if d.CreatedAt, err = parseTime(created); err != nil {
		return rma.Delivery{}, err
	}
	if d.DeliveredAt, err = parseTimeNull(delivered); err != nil {
		return rma.Delivery{}, err
	}
	return d, nil
}

// RecordAttempt records one delivery attempt of outbox row id in one
// transaction: the row gets Attempts+1 and becomes delivered (DeliveredAt,
// TicketID), parked, or stays pending until a.NextAttempt; LastError is
// a.Err. A log-only rma.EventDelivery event goes to the case log (actor
// "desk:NAME", Data: delivery_id, desk, sequence, idempotency_key,
// attempt, outcome, status, error, ticket_id, next_attempt). A delivery
// with a TicketID sets case.DeskRefs[desk] (the case's Seq and UpdatedAt
// do not change: it is not a case event).
//
// ErrNotFound if there is no such row; ErrNoChange (nothing written) if the
// row is no longer pending.
func (s *Store) RecordAttempt(ctx context.Context, id int64, a Attempt) error {
	if a.Delivered && a.Parked {
		return fmt.Errorf("state DB %s: outbox row %d: an attempt cannot be both delivered and parked", s.path, id)
	}
	if a.At.IsZero() {
		a.At = now()
	}
	if !a.Delivered && !a.Parked && a.NextAttempt.IsZero() {
		a.NextAttempt = a.At
	}
	op := "record attempt of outbox row " + strconv.FormatInt(id, 10)
	return s.write(ctx, op, func(tx *wtx) error {
		var caseID, desk, key, state string
		var seq, attempts int
		err := tx.queryRow(ctx, `SELECT case_id, seq, desk, idempotency_key, state, attempts
			FROM outbox WHERE id = ?`, id).Scan(&caseID, &seq, &desk, &key, &state, &attempts)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("outbox row %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return s.fail(op, err)
		}
		if state != rma.DeliveryPending {
			return fmt.Errorf("outbox row %d (%s for desk %s) is already %s: %w", id, key, desk, state, ErrNoChange)
		}
		attempts++
		switch {
		case a.Delivered:
			_, err = tx.exec(ctx, `UPDATE outbox SET state = 'delivered', attempts = ?, last_error = ?,
				ticket_id = ?, delivered_at = ? WHERE id = ?`, attempts, a.Err, a.TicketID, fmtTime(a.At), id)
		case a.Parked:
			_, err = tx.exec(ctx, `UPDATE outbox SET state = 'parked', attempts = ?, last_error = ?
				WHERE id = ?`, attempts, a.Err, id)
		default:
			_, err = tx.exec(ctx, `UPDATE outbox SET attempts = ?, last_error = ?, next_attempt = ?
				WHERE id = ?`, attempts, a.Err, fmtTime(a.NextAttempt), id)
		}
		if err != nil {
			return s.fail(op, err)
		}
		dd := deliveryData{DeliveryID: id, Desk: desk, Sequence: seq, IdempotencyKey: key,
			Attempt: attempts, Outcome: a.Outcome(), Status: a.Status, Error: a.Err, TicketID: a.TicketID}
		if !a.Delivered && !a.Parked {
			dd.NextAttempt = a.NextAttempt.UTC()
		}
		data, err := json.Marshal(dd)
		if err != nil {
			return fmt.Errorf("state DB %s: %s: %w", s.path, op, err)
		}
		ev := rma.Event{CaseID: caseID, Type: rma.EventDelivery, At: a.At, Actor: "desk:" + desk,
			Note: attemptNote(dd), Data: data}
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
		if a.Delivered && a.TicketID != "" {
			return s.setDeskRef(ctx, tx, caseID, desk, a.TicketID)
		}
		return nil
	})
}

// attemptNote is the one-line summary of an attempt shown in the case log.
func attemptNote(d deliveryData) string {
	n := fmt.Sprintf("event %d to desk %s, attempt %d: %s", d.Sequence, d.Desk, d.Attempt, d.Outcome)
	if d.TicketID != "" {
		n += ", ticket " + d.TicketID
	}
	if d.Status != 0 {
		n += fmt.Sprintf(", HTTP %d", d.Status)
	}
	if d.Error != "" {
		n += ": " + d.Error
	}
	return n
}

func (s *Store) setDeskRef(ctx context.Context, tx *wtx, caseID, desk, ticket string) error {
	var raw string
	if err := tx.queryRow(ctx, `SELECT desk_refs FROM cases WHERE id = ?`, caseID).Scan(&raw); err != nil {
		return s.fail("read desk refs of case "+caseID, err)
	}
	var refs map[string]string
	if err := json.Unmarshal([]byte(raw), &refs); err != nil {
		return fmt.Errorf("state DB %s: case %s: bad desk_refs JSON in the database: %w", s.path, caseID, err)
	}
	if refs[desk] == ticket {
		return nil
	}
	if refs == nil {
		refs = map[string]string{}
	}
	refs[desk] = ticket
	b, err := json.Marshal(refs)
	if err != nil {
		return fmt.Errorf("state DB %s: case %s: %w", s.path, caseID, err)
	}
	if _, err := tx.exec(ctx, `UPDATE cases SET desk_refs = ? WHERE id = ?`, string(b), caseID); err != nil {
		return s.fail("write desk refs of case "+caseID, err)
	}
	return nil
}

// ReleaseBundles clears WithholdBundle on the case's pending outbox rows
// (used with approve), so the desk worker attaches the bundle. Rows already
// delivered or parked keep their record of having gone without it.
// ErrNotFound if the case does not exist.
func (s *Store) ReleaseBundles(ctx context.Context, caseID string) error {
	op := "release bundles of case " + caseID
	return s.write(ctx, op, func(tx *wtx) error {
		if err := s.caseExists(ctx, tx, caseID); err != nil {
			return err
		}
		_, err := tx.exec(ctx, `UPDATE outbox SET withhold_bundle = 0
			WHERE case_id = ? AND state = 'pending' AND withhold_bundle = 1`, caseID)
		return s.fail(op, err)
	})
}

// BundlesInUse returns the bundle paths that outbox rows not yet delivered
// (pending, approval-held or parked) reference: what pruning must keep.
func (s *Store) BundlesInUse(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, `SELECT DISTINCT bundle_path FROM outbox
		WHERE state <> 'delivered' AND bundle_path <> '' ORDER BY bundle_path`)
	if err != nil {
		return nil, s.fail("bundles in use", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, s.fail("bundles in use", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("bundles in use", err)
	}
	return out, nil
}

// OutboxCounts returns, by desk, how many rows are pending and parked.
// Desks with neither are absent.
func (s *Store) OutboxCounts(ctx context.Context) (map[string]OutboxCount, error) {
	rows, err := s.query(ctx, `SELECT desk, 'pending', count(*) FROM outbox WHERE state = 'pending' GROUP BY desk
		UNION ALL SELECT desk, 'parked', count(*) FROM outbox WHERE state = 'parked' GROUP BY desk`)
	if err != nil {
		return nil, s.fail("outbox counts", err)
	}
	defer rows.Close()
	out := map[string]OutboxCount{}
	for rows.Next() {
		var desk, state string
		var n int
		if err := rows.Scan(&desk, &state, &n); err != nil {
			return nil, s.fail("outbox counts", err)
		}
		c := out[desk]
		if state == rma.DeliveryPending {
			c.Pending = n
		} else {
			c.Parked = n
		}
		out[desk] = c
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("outbox counts", err)
	}
	return out, nil
}
