package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// FollowedSerials returns, per inventory device, the serial the agent
// follows in place of the configured one (collector.Options.Follow): the
// replacement unit the case engine adopted and recorded in the serial
// history (rma onboarding). A device follows its last recorded serial when
// that differs from its configured serial, the configured serial was
// recorded before it (the device moved on from the configured unit) and no
// other inventory device is configured with it. The configuration file is
// never rewritten; once the operator writes the new serial into it, the
// device follows nothing.
func (s *Store) FollowedSerials(ctx context.Context, devices []config.Device) (map[string]string, error) {
	configured := make(map[string]bool, len(devices))
	for _, d := range devices {
		configured[d.Serial] = true
	}
	out := map[string]string{}
	for _, d := range devices {
		hist, err := s.SerialHistory(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		if len(hist) < 2 {
			continue
		}
		last := hist[len(hist)-1].Serial
		earlier := slices.ContainsFunc(hist[:len(hist)-1], func(r SerialRecord) bool { return r.Serial == d.Serial })
		if last != d.Serial && earlier && !configured[last] {
			out[d.Name] = last
		}
	}
	return out, nil
}

// DeviceLabel returns the label the device's token was last read with
// ("" if it never was read in a slot).
func (s *Store) DeviceLabel(ctx context.Context, device string) (string, error) {
	var label string
	err := s.queryRow(ctx, `SELECT label FROM device_serials
		WHERE device = ? AND slot_id IS NOT NULL ORDER BY id DESC LIMIT 1`, device).Scan(&label)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return label, s.fail("label of device "+device, err)
}
