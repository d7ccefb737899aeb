package rt_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/rt"
)

// testCase is a hardware case of serial with every ticket fact set.
func testCase(serial string, severity int) rma.Case {
	return rma.Case{
		ID: "case-" + serial, DedupKey: rma.DedupKey(serial, rma.KindHardware, "selftest_failed"),
		Serial: serial, Device: "hsm-a", Fault: "selftest_failed", Kind: rma.KindHardware,
		Severity: severity, Tier: config.TierPremium, Flow: rma.FlowAdvanceReplacement,
		State: rma.StateOpen, Environment: config.EnvProduction, Pool: "payments",
		Impact: "1 of 2 healthy members left", Summary: "hsm-a (serial " + serial + ") failed its self-test",
		Description: "C_GenerateRandom failed 3 polls in a row since 12:00.",
		OpenedAt:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Occurrences: 1,
	}
}

// message builds the outbox message of event seq of c; bundle, when not
// "", is the bundle file the row names.
func message(t *testing.T, event string, seq int, c rma.Case, step *rma.StepRecord, bundle string, withhold bool) desk.Message {
	t.Helper()
	c.Seq = seq
	if event == rma.EventClosed {
		c.State = rma.StateClosed
	}
	payload, err := json.Marshal(rma.DeskEvent{Event: event, Sequence: seq, Case: c, Step: step})
	if err != nil {
		t.Fatal(err)
	}
	row := rma.Delivery{ID: int64(seq), CaseID: c.ID, Seq: seq, Desk: "rt", IdempotencyKey: rma.IdempotencyKey(c.ID, seq),
		Payload: payload, BundlePath: bundle, WithholdBundle: withhold}
	m, err := desk.NewMessage(row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// confirmStep is a confirm step with an RMA request.
func confirmStep() *rma.StepRecord {
	return &rma.StepRecord{Event: "confirm", From: rma.StateOpen, Actor: "operator:alice",
		At: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC), Note: "vendor confirmed the fault",
		Request: map[string]any{rma.RequestFirmware: "12.80", rma.RequestShipTo: map[string]any{
			"address": "1 Dock Road, London", "contact": "Site Ops", "phone": "+44 20 7946 0000"}}}
}

// writeFile writes content to a new file in t's temp dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newDesk builds an rt desk from cfg (name "rt", type rt, role vendor).
func newDesk(t *testing.T, cfg config.Desk) *rt.Desk {
	t.Helper()
	cfg.Name, cfg.Type, cfg.Role = "rt", config.DeskRT, config.RoleVendor
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute // a loaded machine; never a timed assertion
	}
	d, err := rt.New(cfg, nil, rt.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
