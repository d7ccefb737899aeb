package desk_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// eventPayload is the payload the engine queues: a DeskEvent without
// sent_at and bundle content.
func eventPayload(caseID string, seq int) json.RawMessage {
	ev := rma.DeskEvent{Event: rma.EventOpened, Sequence: seq, Case: testCase(caseID)}
	if seq > 1 {
		ev.Event = rma.EventUpdated
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

func testCase(id string) rma.Case {
	return rma.Case{
		ID: id, DedupKey: "SN-" + id + "/hardware/missing", Serial: "SN-" + id, Device: "hsm-" + id,
		Fault: "missing", Kind: rma.KindHardware, Severity: 1, Tier: config.TierPremiumPlus,
		Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen, Environment: config.EnvProduction,
		Pool: "payments", Summary: "hsm-" + id + " is missing", Description: "not in the slot list for 3 polls",
		OpenedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

// deskHit is one request the test desk received.
type deskHit struct {
	key  string
	body []byte
}

// deskServer is an httptest webhook desk that records every request and
// answers with respond.
type deskServer struct {
	mu   sync.Mutex
	hits []deskHit
	srv  *httptest.Server
}

func newDeskServer(t testing.TB, respond func(w http.ResponseWriter)) *deskServer {
	t.Helper()
	s := &deskServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.hits = append(s.hits, deskHit{key: r.Header.Get("Idempotency-Key"), body: body})
		s.mu.Unlock()
		respond(w)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *deskServer) all() []deskHit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]deskHit(nil), s.hits...)
}

func webhookDesk(t testing.TB, name, url string) desk.Desk {
	t.Helper()
	d, err := webhook.New(config.Desk{Name: name, Type: config.DeskWebhook, URL: url}, nil,
		webhook.Options{Version: "test", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
