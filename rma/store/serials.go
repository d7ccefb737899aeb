package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SerialRecord is one stretch of a device's serial history: the serial
// seen for the inventory device from FirstSeen to LastSeen.
type SerialRecord struct {
	Device    string    `json:"device"`
	Serial    string    `json:"serial"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// RecordSerial notes that device reported serial at time at. changed is
// true when the device had a history and its last serial differs (the unit
// was replaced or swapped); the first sighting is not a change. A serial
// seen again after another one starts a new record, so the history keeps
// the order A, B, A.
func (s *Store) RecordSerial(ctx context.Context, device, serial string, at time.Time) (changed bool, err error) {
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
			return s.fail(op, err)
		case err == nil:
			changed = true
		case !errors.Is(err, sql.ErrNoRows):
			return s.fail(op, err)
		}
		_, err = tx.exec(ctx, `INSERT INTO device_serials (device, serial, first_seen, last_seen)
			VALUES (?, ?, ?, ?)`, device, serial, fmtTime(at), fmtTime(at))
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
	rows, err := s.query(ctx, `SELECT device, serial, first_seen, last_seen FROM device_serials
		WHERE device = ? ORDER BY id`, device)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	out := []SerialRecord{}
	for rows.Next() {
		var r SerialRecord
		var first, last string
		if err := rows.Scan(&r.Device, &r.Serial, &first, &last); err != nil {
			return nil, s.fail(op, err)
		}
		if r.FirstSeen, err = parseTime(first); err != nil {
			return nil, s.fail(op, err)
		}
		if r.LastSeen, err = parseTime(last); err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}
