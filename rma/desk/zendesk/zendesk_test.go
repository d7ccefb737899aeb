package zendesk_test

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
	"github.com/hsm-agent/hsm-agent/rma/desk/zendesk"
)

// TestPriority is the severity table of the package doc.
func TestPriority(t *testing.T) {
	t.Parallel()
	for sev, want := range map[int]string{1: "urgent", 2: "high", 3: "normal", 4: "low", 0: "normal"} {
		if got := zendesk.Priority(sev); got != want {
			t.Errorf("Priority(%d) = %q, want %q", sev, got, want)
		}
	}
}

func testCase(sev int) rma.Case {
	return rma.Case{
		ID: "HA-00000001", DedupKey: "SN-1/hardware/missing", Serial: "SN-1", Device: "hsm-a",
		Fault: "missing", Kind: rma.KindHardware, Severity: sev, Tier: config.TierPremiumPlus,
		Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen, Environment: config.EnvProduction,
		Pool: "payments", Impact: "pool payments: 1 of 2 healthy", Summary: "hsm-a is missing",
		Description: "not in the slot list for 3 polls",
	}
}

func message(t *testing.T, ev rma.DeskEvent) desk.Message {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return desk.Message{Delivery: rma.Delivery{CaseID: ev.Case.ID, Seq: ev.Sequence, Desk: "zd",
		IdempotencyKey: rma.IdempotencyKey(ev.Case.ID, ev.Sequence)}, Body: b}
}

// TestLifecycle: open (with the bundle through the Uploads API and the RMA
// request in the text), a second open for the same dedup key, an update and
// the close: one ticket with the mapped priority, comments, solved.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for sev, prio := range map[int]string{1: "urgent", 2: "high", 3: "normal", 4: "low"} {
		t.Run(fmt.Sprint(sev), func(t *testing.T) {
			t.Parallel()
			z := newZendesk(t)
			d := newDesk(t, z)
			c := testCase(sev)
			open := rma.DeskEvent{Event: rma.EventOpened, Sequence: 1, Case: c,
				Bundle: &rma.BundleRef{Name: "bundle.tar.gz", ContentBase64: base64.StdEncoding.EncodeToString([]byte("BUNDLE"))},
				Step: &rma.StepRecord{Event: "confirm", Actor: "operator:alice", Request: map[string]any{
					"requested_firmware": "12.80", "model": "nShield 5c", "contract_id": "C-77",
					"ship_to": map[string]any{"name": "DC1", "street": "1 Vault Rd", "contact": "Bob"}}}}
			id, retry, err := d.Send(ctx, message(t, open))
			if err != nil || retry || id != "100" {
				t.Fatalf("open: %q %v %v", id, retry, err)
			}
			// A second open (a resend, another agent) finds the ticket.
			open.Sequence = 2
			if id2, _, err := d.Send(ctx, message(t, open)); err != nil || id2 != id {
				t.Fatalf("second open: %q %v, want the existing %s", id2, err, id)
			}
			upd := rma.DeskEvent{Event: rma.EventUpdated, Sequence: 3, Case: c}
			if _, _, err := d.Send(ctx, message(t, upd)); err != nil {
				t.Fatal(err)
			}
			cl := rma.DeskEvent{Event: rma.EventClosed, Sequence: 4, Case: c}
			if _, _, err := d.Send(ctx, message(t, cl)); err != nil {
				t.Fatal(err)
			}
			tickets, creates := z.snapshot()
			if len(tickets) != 1 || creates != 1 {
				t.Fatalf("%d tickets after %d creates, want 1", len(tickets), creates)
			}
			tk := tickets[0]
			if tk.Priority != prio || tk.ExternalID != c.DedupKey || tk.Status != "solved" || tk.Idem != "HA-00000001:1" {
				t.Errorf("ticket priority %q external_id %q status %q idem %q", tk.Priority, tk.ExternalID, tk.Status, tk.Idem)
			}
			if len(tk.Comments) != 4 {
				t.Fatalf("%d comments, want 4", len(tk.Comments))
			}
			first := fmt.Sprint(tk.Comments[0]["body"])
			for _, s := range []string{"SN-1", "hsm-a", "production", "pool payments: 1 of 2 healthy", "premium-plus",
				"contract_id: C-77", "requested_firmware: 12.80", "model: nShield 5c", "ship_to.street: 1 Vault Rd", "ship_to.contact: Bob"} {
				if !strings.Contains(first, s) {
					t.Errorf("ticket text lacks %q:\n%s", s, first)
				}
			}
			ups, _ := tk.Comments[0]["uploads"].([]any)
			if len(ups) != 1 || string(z.uploads[fmt.Sprint(ups[0])]) != "BUNDLE" {
				t.Errorf("first comment uploads %v, want the bundle's token", tk.Comments[0]["uploads"])
			}
			if pub, _ := tk.Comments[2]["public"].(bool); pub || !strings.Contains(fmt.Sprint(tk.Comments[2]["body"]), "case.updated") {
				t.Errorf("update comment %v", tk.Comments[2])
			}
		})
	}
}

// TestTokenNeverInErrors: the token stays out of the desk's printed form.
func TestTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	d := newDesk(t, newZendesk(t))
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%#v", d), fmt.Sprintf("%+v", *d)} {
		if strings.Contains(s, testToken) || strings.Contains(s, base64.StdEncoding.EncodeToString([]byte(testEmail+"/token:"+testToken))) {
			t.Errorf("token printed: %s", s)
		}
	}
}

// TestDeskTest: desk test reads the current user; wrong credentials say auth.
func TestDeskTest(t *testing.T) {
	t.Parallel()
	z := newZendesk(t)
	id, err := desk.Test(context.Background(), newDesk(t, z))
	if err != nil || !strings.Contains(id, "user 7") {
		t.Fatalf("desk test: %q %v", id, err)
	}
	if _, creates := z.snapshot(); creates != 0 {
		t.Errorf("desk test created %d tickets", creates)
	}
	bad := newZendesk(t)
	bad.refuseQuietly = true
	d, err := zendesk.New(config.Desk{Name: "zd", URL: bad.srv.URL, Email: "other@example.com", TokenFile: writeToken(t)}, nil, zendesk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = desk.Test(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "auth: check email and token_file") {
		t.Errorf("desk test with wrong credentials: %v", err)
	}
}
