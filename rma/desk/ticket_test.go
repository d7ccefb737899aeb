package desk_test

import (
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// TestTicketFacts: a ticket carries every fact support-model.md section 5
// asks for, model, firmware and contract ID from the case when it has
// them, "not reported" otherwise, and the RMA request's details.
func TestTicketFacts(t *testing.T) {
	t.Parallel()
	body := `{"event":"case.confirmed","sequence":2,"case":{"id":"HA-1","dedup_key":"S1/hardware/missing","serial":"S1",
		"device":"hsm-a","severity":1,"tier":"premium-plus","environment":"production","pool":"payments",
		"model":"nC3025E","contract_id":"C-77"},
		"step":{"event":"confirm","rma_request":{"requested_firmware":"12.60","ship_to":{"address":"1 Vault Road","contact":"Sam"}}}}`
	tk, err := desk.ParseTicket([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := desk.PlainText(tk.Facts())
	for _, want := range []string{"Serial: S1\n", "Device: hsm-a\n", "Model: nC3025E\n", "Firmware: not reported\n",
		"Environment: production\n", "Pool impact: payments\n", "Tier: premium-plus\n", "Contract ID: C-77\n",
		"Requested firmware: 12.60\n", "Ship to address: 1 Vault Road\n", "Ship to contact: Sam\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("facts lack %q:\n%s", want, got)
		}
	}
	if tk.Closing() {
		t.Error("case.confirmed is not a closing event")
	}
}
