package outbox_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/bundle"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
)

// TestWorkerScrubsTicketText: a secret that reached a case's text (a
// library's error message quoting its PIN, an operator's note with a
// token) is scrubbed by the bundles' scrubber before the event leaves.
func TestWorkerScrubsTicketText(t *testing.T) {
	t.Parallel()
	const pin, token = "pin-31904-zzK", "apitok_7fQ2mZ9xLr4Wc"
	srv := newDeskServer(t, nil)
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	ev := rma.DeskEvent{Event: rma.EventOpened, Sequence: 1, Case: testCase("c1"), Page: &rma.Page{Text: "call about --pin " + pin}}
	ev.Case.Summary = "hsm-c1: C_Login failed with PIN " + pin
	ev.Case.Description = "operator note: Authorization: Bearer " + token
	ev.Case.Impact = "token=" + token
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.rows[id-1].Payload = payload
	st.mu.Unlock()

	sc, err := bundle.NewScrubber([]config.Secret{pin}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := fastWorker(nil)
	opts.Scrub = sc.Scrub
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, opts)
	runWorker(t, w)
	waitFor(t, 20*time.Second, "delivery", func() bool { return st.row(id).State == rma.DeliveryDelivered })

	body := string(srv.all()[0].body)
	for _, secret := range []string{pin, token} {
		if strings.Contains(body, secret) {
			t.Errorf("the event sent holds %q:\n%s", secret, body)
		}
	}
	var sent rma.DeskEvent
	if err := json.Unmarshal([]byte(body), &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Case.Summary != "hsm-c1: C_Login failed with PIN "+bundle.Redacted || sent.Case.Serial != "SN-c1" {
		t.Errorf("the event should keep its text around the scrubbed secret: summary %q serial %q", sent.Case.Summary, sent.Case.Serial)
	}
}
