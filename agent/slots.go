package agent

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/probe"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// knownSlots turns the slot records of the state database into the
// collector's Known hints: per module, the serial last read in each slot.
// Only records of an inventory device with the same serial and module
// count (an entry that changed since says nothing about today's slots);
// the records come least recently seen first, so the latest wins a slot.
func knownSlots(cfg *config.Config, recs []store.SerialRecord) map[string][]probe.KnownSlot {
	out := map[string][]probe.KnownSlot{}
	for _, r := range recs {
		d, ok := cfg.Device(r.Device)
		if !ok || r.Slot == nil || d.Serial != r.Serial || d.Module != r.Slot.Module {
			continue
		}
		out[d.Module] = append(out[d.Module], probe.KnownSlot{SlotID: r.Slot.SlotID, Serial: r.Serial})
	}
	return out
}

// storeSlots reads the slot hints from the daemon's open store. A failure
// is logged and the agent starts without hints.
func storeSlots(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) map[string][]probe.KnownSlot {
	recs, err := st.LastSlots(ctx)
	if err != nil {
		log.Warn("cannot read the slots devices were last read in; a token whose serial cannot be read is not named until it is read again", "err", err)
		return nil
	}
	return knownSlots(cfg, recs)
}

// readOnlySlots reads the slot hints for `check` without creating or
// writing the state database. No database yet is normal (no daemon ran);
// another failure is logged at warn.
func readOnlySlots(ctx context.Context, cfg *config.Config, log *slog.Logger) map[string][]probe.KnownSlot {
	recs, err := store.ReadLastSlots(ctx, filepath.Join(cfg.StateDir, StateDBName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		log.Warn("cannot read the slots devices were last read in from the state database (state_dir); a token whose serial cannot be read is not named", "err", err)
		return nil
	}
	return knownSlots(cfg, recs)
}

// followedSerials reads, from the daemon's open store, the serial each
// device is polled under when a replacement unit was onboarded (the
// configuration keeps the old serial; the serial history has the new). A
// failure is logged and the agent polls the configured serials.
func followedSerials(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) map[string]string {
	follow, err := st.FollowedSerials(ctx, cfg.Devices)
	if err != nil {
		log.Warn("cannot read the serials of onboarded replacement units; polling the configured serials", "err", err)
		return nil
	}
	return follow
}

// readOnlyFollowed reads the onboarded replacement serials for `check`
// without creating or writing the state database, so that a one-shot poll
// looks for a device under the serial the daemon polls it under.
func readOnlyFollowed(ctx context.Context, cfg *config.Config, log *slog.Logger) map[string]string {
	follow, err := store.ReadFollowedSerials(ctx, filepath.Join(cfg.StateDir, StateDBName), cfg.Devices)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		log.Warn("cannot read the serials of onboarded replacement units from the state database (state_dir); checking the configured serials", "err", err)
		return nil
	}
	return follow
}
