package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/hsm-agent/hsm-agent/rma"
)

// ParkedDeliveries returns every parked outbox row (a desk refused it for
// good), oldest first: what `hsm-agent outbox` lists.
func (s *Store) ParkedDeliveries(ctx context.Context) ([]rma.Delivery, error) {
	return s.queryDeliveries(ctx, "parked deliveries",
		`SELECT `+deliveryCols+` FROM outbox WHERE state = 'parked' ORDER BY id`)
}

// Requeue makes parked outbox row id pending again, due at once, keeping
// its attempts and last error; the daemon's outbox worker picks it up on
// its next scan. actor (e.g. "operator:alice") is recorded in a log-only
// rma.EventDelivery event with outcome "requeued". ErrNotFound if there
// is no such row; ErrNoChange (nothing written) if it is not parked.
func (s *Store) Requeue(ctx context.Context, id int64, actor string) error {
	at := now()
	op := "requeue outbox row " + strconv.FormatInt(id, 10)
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
		if state != rma.DeliveryParked {
			return fmt.Errorf("outbox row %d (%s for desk %s) is %s, not parked: %w", id, key, desk, state, ErrNoChange)
		}
		if _, err := tx.exec(ctx, `UPDATE outbox SET state = 'pending', next_attempt = ? WHERE id = ?`, fmtTime(at), id); err != nil {
			return s.fail(op, err)
		}
		dd := deliveryData{DeliveryID: id, Desk: desk, Sequence: seq, IdempotencyKey: key,
			Attempt: attempts, Outcome: "requeued", NextAttempt: at.UTC()}
		data, err := json.Marshal(dd)
		if err != nil {
			return fmt.Errorf("state DB %s: %s: %w", s.path, op, err)
		}
		ev := rma.Event{CaseID: caseID, Type: rma.EventDelivery, At: at, Actor: actor,
			Note: fmt.Sprintf("event %d for desk %s requeued after %d attempts", seq, desk, attempts), Data: data}
		return s.insertEvent(ctx, tx, ev)
	})
}
