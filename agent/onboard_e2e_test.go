package agent

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/rma"
)

// TestReplacementOnboardingFiresInstall runs the advance replacement as a
// site lives it, in the real daemon against SoftHSM2: the token fails, the
// vendor's progress arrives through the API (the confirm event carries the
// RMA request: requested firmware and shipping address), a token with the
// failed device's label and a new serial appears in the module, and the
// agent itself fires install with the evidence, to both desks.
func TestReplacementOnboardingFiresInstall(t *testing.T) {
	t.Parallel()
	s, ra, id := flowSite(t, "api: {token_file: TOKENFILE}")
	failed := s.fleet.Tokens[0]
	// The case carries the facts every vendor asks for, from the token as
	// it last reported and from the inventory.
	if c := s.desk.accepted("vendor")[0].Event.Case; c.Model == "" || c.Firmware == "" || c.ContractID != "C-1" {
		t.Errorf("case.opened carries model %q, firmware %q, contract %q; want the token's and C-1", c.Model, c.Firmware, c.ContractID)
	}

	for _, body := range []string{
		`{"event": "confirm", "note": "fault validated by the vendor"}`,
		`{"event": "authorize", "rma": "RMA-9"}`,
		`{"event": "ship", "tracking": "1Z-NEW-UNIT"}`,
	} {
		if got := ra.postEvent(t, id, apiTestToken, body); got.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", body, got.Status, got.Body)
		}
	}
	confirmed := where(s.desk.accepted("vendor"), func(c deskCall) bool { return c.Event.Event == "case.confirmed" })
	waitUntil(t, e2eWait, "case.confirmed at the vendor desk", func() bool {
		confirmed = where(s.desk.accepted("vendor"), func(c deskCall) bool { return c.Event.Event == "case.confirmed" })
		return len(confirmed) == 1
	})
	req := confirmed[0].Event.Step
	if req == nil || req.Request == nil || req.Request["requested_firmware"] == "" || req.Request["requested_firmware"] == nil {
		t.Errorf("case.confirmed carries no RMA request with the requested firmware: %+v", req)
	}

	repl, err := s.fleet.AddToken(failed.Label)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, e2eWait, "install fired by the agent", func() bool {
		return ra.caseView(t, id).State == rma.StateReplacementInstalled
	})
	installed := where(s.desk.accepted("vendor"), func(c deskCall) bool { return c.Event.Event == "case.replacement_installed" })
	waitUntil(t, e2eWait, "case.replacement_installed at the vendor desk", func() bool {
		installed = where(s.desk.accepted("vendor"), func(c deskCall) bool { return c.Event.Event == "case.replacement_installed" })
		return len(installed) == 1
	})
	step := installed[0].Event.Step
	if step == nil || step.Actor != rma.ActorAgent || !strings.Contains(step.Note, repl.Serial) || !strings.Contains(step.Note, "token initialised") {
		t.Errorf("install step %+v: want the agent as actor and the evidence naming serial %s", step, repl.Serial)
	}
	if d := ra.devices(t)["hsm-0"]; d.Serial != repl.Serial || d.State != "healthy" {
		t.Errorf("hsm-0 after install: serial %s %s, want the replacement %s healthy", d.Serial, d.State, repl.Serial)
	}
	// `check` looks for hsm-0 under the serial the daemon follows.
	if _, got := checkStates(t, s.config); got["hsm-0"].Serial != repl.Serial || got["hsm-0"].State != "healthy" {
		t.Errorf("check after install: hsm-0 serial %s %s, want the replacement %s healthy", got["hsm-0"].Serial, got["hsm-0"].State, repl.Serial)
	}
	ra.waitPolls(t, 3)
	if n := len(where(s.desk.accepted("vendor"), func(c deskCall) bool { return c.Event.Event == "case.replacement_installed" })); n != 1 {
		t.Errorf("install reached the vendor desk %d times, want once", n)
	}
}
