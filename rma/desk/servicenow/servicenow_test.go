package servicenow_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/servicenow"
)

// TestImpactUrgency is the severity table of the package doc.
func TestImpactUrgency(t *testing.T) {
	t.Parallel()
	for sev, want := range map[int]string{1: "1/1", 2: "1/2", 3: "2/2", 4: "2/3", 0: "2/2"} {
		i, u := servicenow.ImpactUrgency(sev)
		if got := i + "/" + u; got != want {
			t.Errorf("ImpactUrgency(%d) = %s, want %s", sev, got, want)
		}
	}
}

func testCase(sev int) rma.Case {
	return rma.Case{
		ID: "HA-00000001", DedupKey: "SN-1/hardware/missing", Serial: "SN-1", Device: "hsm-a",
		Fault: "missing", Kind: rma.KindHardware, Severity: sev, Tier: config.TierPremiumPlus,
		Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen, Environment: config.EnvProduction,
		Pool: "payments", Impact: "pool payments: 1 of 2 healthy", Summary: "hsm-a is missing",
	}
}

func message(t *testing.T, ev rma.DeskEvent) desk.Message {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return desk.Message{Delivery: rma.Delivery{CaseID: ev.Case.ID, Seq: ev.Sequence, Desk: "snow",
		IdempotencyKey: rma.IdempotencyKey(ev.Case.ID, ev.Sequence)}, Body: b}
}

// TestLifecycle: open with the bundle attached, a second open for the same
// dedup key, an update and the close: one incident with the mapped impact
// and urgency, work notes, resolved with a close code.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for sev := 1; sev <= 4; sev++ {
		t.Run(fmt.Sprint(sev), func(t *testing.T) {
			t.Parallel()
			s := newSnow(t)
			d := newDesk(t, s, testUser)
			c := testCase(sev)
			open := rma.DeskEvent{Event: rma.EventOpened, Sequence: 1, Case: c,
				Bundle: &rma.BundleRef{Name: "bundle.tar.gz", ContentBase64: base64.StdEncoding.EncodeToString([]byte("BUNDLE"))},
				Step: &rma.StepRecord{Event: "confirm", Actor: "operator:alice", Request: map[string]any{
					"requested_firmware": "12.80", "contract_id": "C-77", "ship_to": map[string]any{"street": "1 Vault Rd"}}}}
			id, retry, err := d.Send(ctx, message(t, open))
			if err != nil || retry || id != "INC0000001" {
				t.Fatalf("open: %q %v %v", id, retry, err)
			}
			open.Sequence, open.Bundle = 2, nil
			if id2, _, err := d.Send(ctx, message(t, open)); err != nil || id2 != id {
				t.Fatalf("second open: %q %v, want the existing %s", id2, err, id)
			}
			for i, ev := range []string{rma.EventUpdated, rma.EventClosed} {
				if _, _, err := d.Send(ctx, message(t, rma.DeskEvent{Event: ev, Sequence: 3 + i, Case: c})); err != nil {
					t.Fatal(err)
				}
			}
			incs, creates := s.snapshot()
			if len(incs) != 1 || creates != 1 {
				t.Fatalf("%d incidents after %d creates, want 1", len(incs), creates)
			}
			f := incs[0].Fields
			wi, wu := servicenow.ImpactUrgency(sev)
			if f["impact"] != wi || f["urgency"] != wu || f["correlation_id"] != c.DedupKey || f["assignment_group"] != "HSM Operations" {
				t.Errorf("incident fields %v", f)
			}
			if f["state"] != "6" || f["close_code"] == "" || !strings.Contains(f["close_notes"], "closed") {
				t.Errorf("not resolved: state %q close_code %q close_notes %q", f["state"], f["close_code"], f["close_notes"])
			}
			for _, want := range []string{"SN-1", "hsm-a", "production", "pool payments: 1 of 2 healthy", "premium-plus",
				"contract_id: C-77", "requested_firmware: 12.80", "ship_to.street: 1 Vault Rd"} {
				if !strings.Contains(f["description"], want) {
					t.Errorf("description lacks %q:\n%s", want, f["description"])
				}
			}
			if string(incs[0].Attachments["bundle.tar.gz"]) != "BUNDLE" {
				t.Errorf("attachments %v", incs[0].Attachments)
			}
			if len(incs[0].WorkNotes) != 3 || !strings.Contains(incs[0].WorkNotes[1], "case.updated") {
				t.Errorf("work notes %q", incs[0].WorkNotes)
			}
		})
	}
}

// TestDeskTest: desk test reads the incident table; a wrong user says auth.
func TestDeskTest(t *testing.T) {
	t.Parallel()
	s := newSnow(t)
	if got, err := desk.Test(context.Background(), newDesk(t, s, testUser)); err != nil || !strings.Contains(got, "incident table readable") {
		t.Fatalf("desk test: %q %v", got, err)
	}
	s.refuseQuietly = true
	_, err := desk.Test(context.Background(), newDesk(t, s, "someone-else"))
	if err == nil || !strings.Contains(err.Error(), "auth: check username") {
		t.Errorf("desk test with a wrong user: %v", err)
	}
	if _, creates := s.snapshot(); creates != 0 {
		t.Errorf("desk test created %d incidents", creates)
	}
}
