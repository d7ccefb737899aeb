package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// TestPruneKeepsBundlesTheOutboxNeeds: with retention 1, building a new
// bundle prunes the older ones, except those an undelivered outbox row
// (pending, or held for approval) of the real state DB still references;
// a bundle whose row was delivered goes.
func TestPruneKeepsBundlesTheOutboxNeeds(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, "diagnostics: {retention: 1}")
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	dev := cfg.Devices[0]
	st, err := store.Open(filepath.Join(cfg.StateDir, StateDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	src := bundleSource{inUse: st.BundlesInUse}

	var paths []string
	for range 3 {
		res, err := makeBundle(ctx, cfg, bundleSource{}, dev, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, res.Path)
		time.Sleep(2 * time.Millisecond) // distinct name timestamps (ms)
	}
	// Retention 1 pruned as it went: only the newest is on disk; build
	// the two older ones again with references in the outbox.
	pending, held, delivered := paths[0], paths[1], paths[2]
	for _, p := range []string{pending, held} {
		if err := os.WriteFile(p, []byte("referenced"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	refs := []struct {
		id, path string
		withhold bool
	}{{"HA-PENDING", pending, false}, {"HA-HELD", held, true}, {"HA-DONE", delivered, false}}
	for _, r := range refs {
		c := rma.Case{ID: r.id, DedupKey: r.id + "/hardware/missing", Serial: dev.Serial, Device: dev.Name, Fault: "missing",
			Kind: rma.KindHardware, Severity: 2, Tier: "premium", Flow: rma.FlowAdvanceReplacement,
			Environment: "production", Pool: "payments", Summary: "x", Occurrences: 1}
		out := []rma.Delivery{{Desk: "ops", Payload: json.RawMessage(`{}`), BundlePath: r.path, WithholdBundle: r.withhold}}
		if _, err := st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, Actor: "agent"}, out); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := st.Deliveries(ctx, "HA-DONE")
	if err != nil || len(ds) != 1 {
		t.Fatal(ds, err)
	}
	if err := st.RecordAttempt(ctx, ds[0].ID, store.Attempt{Delivered: true}); err != nil {
		t.Fatal(err)
	}

	time.Sleep(2 * time.Millisecond)
	newest, err := makeBundle(ctx, cfg, src, dev, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, keep := range map[string]bool{pending: true, held: true, delivered: false, newest.Path: true} {
		_, err := os.Stat(p)
		if exists := err == nil; exists != keep {
			t.Errorf("%s: exists=%v after pruning, want %v", filepath.Base(p), exists, keep)
		}
	}
}
