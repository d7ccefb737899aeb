package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// SerialRecord is one stretch of a device's serial history: the serial
// seen for the inventory device from FirstSeen to LastSeen, and where its
// token was last read (Slot nil until it was).
type SerialRecord struct {
	Device    string    `json:"device"`
	Serial    string    `json:"serial"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Slot is the module, slot ID and label the serial was last read in.
	Slot *rma.SlotSeen `json:"slot,omitempty"`
}

// RecordSerial notes that device reported serial at time at. changed is
// true when the device had a history and its last serial differs (the unit
// was replaced or swapped); the first sighting is not a change. A serial
// seen again after another one starts a new record, so the history keeps
// the order A, B, A.
func (s *Store) RecordSerial(ctx context.Context, device, serial string, at time.Time) (changed bool, err error) {
	return s.recordSerial(ctx, device, serial, nil, at)
}

// RecordSlot notes that device's token, serial seen.Serial, was read in
// seen's module and slot with seen's label at time at. It updates the
// device's current serial record (starting a new one, as RecordSerial
// does, when the serial differs).
func (s *Store) RecordSlot(ctx context.Context, device string, seen rma.SlotSeen, at time.Time) error {
	_, err := s.recordSerial(ctx, device, seen.Serial, &seen, at)
	return err
}

// recordSerial is RecordSerial, also recording the slot when slot is set.
func (s *Store) recordSerial(ctx context.Context, device, serial string, slot *rma.SlotSeen, at time.Time) (changed bool, err error) {
	if device == "" || serial == "" {
		return false, fmt.Errorf("state DB %s: record serial: device and serial are required (device %q, serial %q)", s.path, device, serial)
	}
	if at.IsZero() {
		at = now()
	}
	op := "record serial of device " + device
	err = s.write(ctx, op, func(tx *wtx) error {
		var id int64
		var last, lastSeen string
		err := tx.queryRow(ctx, `SELECT id, serial, last_seen FROM device_serials
			WHERE device = ? ORDER BY id DESC LIMIT 1`, device).Scan(&id, &last, &lastSeen)
		switch {
		case err == nil && last == serial:
			// max(): an out-of-order report never moves last_seen back.
			if fmtTime(at) > lastSeen {
				_, err = tx.exec(ctx, `UPDATE device_serials SET last_seen = ? WHERE id = ?`, fmtTime(at), id)
			}
			if err == nil && slot != nil {
				_, err = tx.exec(ctx, `UPDATE device_serials SET module = ?, slot_id = ?, label = ? WHERE id = ?`,
					slot.Module, int64(slot.SlotID), slot.Label, id)
			}
			return s.fail(op, err)
		case err == nil:
			changed = true
		case !errors.Is(err, sql.ErrNoRows):
			return s.fail(op, err)
		}
		var module, label string
		var slotID any
		if slot != nil {
			module, slotID, label = slot.Module, int64(slot.SlotID), slot.Label
		}
		_, err = tx.exec(ctx, `INSERT INTO device_serials (device, serial, first_seen, last_seen, module, slot_id, label)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, device, serial, fmtTime(at), fmtTime(at), module, slotID, label)
		return s.fail(op, err)
	})
	if err != nil {
		return false, err
	}
	return changed, nil
}

// SerialHistory returns a device's serial records, oldest first.
func (s *Store) SerialHistory(ctx context.Context, device string) ([]SerialRecord, error) {
	op := "serial history of device " + device
	rows, err := s.query(ctx, `SELECT `+serialColumns+` FROM device_serials
		WHERE device = ? ORDER BY id`, device)
	if err != nil {
		return nil, s.fail(op, err)
	}
	out, err := scanSerials(rows)
	if err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// serialColumns are the columns scanSerials reads, in its order.
const serialColumns = "device, serial, first_seen, last_seen, module, slot_id, label"

// lastSlotsQuery selects each device's current serial record, when its
// token was read in a slot.
const lastSlotsQuery = `SELECT ` + serialColumns + ` FROM device_serials
	WHERE id IN (SELECT max(id) FROM device_serials GROUP BY device) AND slot_id IS NOT NULL
	ORDER BY last_seen, id`

// scanSerials reads rows of serialColumns and closes them.
func scanSerials(rows *sql.Rows) ([]SerialRecord, error) {
	defer rows.Close()
	out := []SerialRecord{}
	for rows.Next() {
		var r SerialRecord
		var first, last, module, label string
		var slot sql.NullInt64
		if err := rows.Scan(&r.Device, &r.Serial, &first, &last, &module, &slot, &label); err != nil {
			return nil, err
		}
		var err error
		if r.FirstSeen, err = parseTime(first); err != nil {
			return nil, err
		}
		if r.LastSeen, err = parseTime(last); err != nil {
			return nil, err
		}
		if slot.Valid {
			r.Slot = &rma.SlotSeen{Serial: r.Serial, Module: module, SlotID: uint(slot.Int64), Label: label}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// LastSlots returns, for every device whose token was read in a slot, its
// current serial record, least recently seen first.
func (s *Store) LastSlots(ctx context.Context) ([]SerialRecord, error) {
	rows, err := s.query(ctx, lastSlotsQuery)
	if err != nil {
		return nil, s.fail("last slots", err)
	}
	out, err := scanSerials(rows)
	if err != nil {
		return nil, s.fail("last slots", err)
	}
	return out, nil
}
