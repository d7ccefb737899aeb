package pagerduty_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/desktest"
	"github.com/hsm-agent/hsm-agent/rma/desk/pagerduty"
)

const routingKey = "R0UT1NGKEY0123456789abcdef012345"

// fakeEvents implements POST /v2/enqueue of the Events API v2: it checks
// method, path, Content-Type, the routing key and the event, and keeps
// alerts by dedup_key as PagerDuty does (a trigger for an open alert adds
// to it; resolve closes it).
type fakeEvents struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	events   []pagerduty.Event
	alerts   map[string]string // dedup_key -> "triggered" | "resolved"
	opened   int               // alerts created
	received int
	// answer, when set, may answer request n (from 0) itself; the event
	// is then not processed.
	answer func(n int, w http.ResponseWriter) bool
}

func newFakeEvents(t *testing.T) *fakeEvents {
	f := &fakeEvents{t: t, alerts: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEvents) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.received
	f.received++
	if r.Method != http.MethodPost || r.URL.Path != "/v2/enqueue" || r.Header.Get("Content-Type") != "application/json" {
		f.t.Errorf("%s %s Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.answer != nil && f.answer(n, w) {
		return
	}
	var ev pagerduty.Event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.RoutingKey != routingKey || ev.DedupKey == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"invalid event","message":"Event object is invalid","errors":["Invalid routing key"]}`))
		return
	}
	switch ev.EventAction {
	case "trigger":
		p := ev.Payload
		if p == nil || p.Summary == "" || p.Source == "" || !strings.Contains("critical error warning info", p.Severity) || p.Severity == "" {
			f.t.Errorf("trigger payload %+v", p)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if f.alerts[ev.DedupKey] != "triggered" {
			f.opened++
		}
		f.alerts[ev.DedupKey] = "triggered"
	case "resolve":
		if ev.Payload != nil {
			f.t.Errorf("resolve with a payload: %+v", ev)
		}
		if f.alerts[ev.DedupKey] == "triggered" {
			f.alerts[ev.DedupKey] = "resolved"
		}
	default:
		f.t.Errorf("event_action %q", ev.EventAction)
	}
	f.events = append(f.events, ev)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
}

func (f *fakeEvents) snapshot() ([]pagerduty.Event, map[string]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	alerts := map[string]string{}
	for k, v := range f.alerts {
		alerts[k] = v
	}
	return append([]pagerduty.Event(nil), f.events...), alerts, f.opened
}

func newDesk(t *testing.T, url, key string) *pagerduty.Desk {
	t.Helper()
	kf := filepath.Join(t.TempDir(), "routing.key")
	if err := os.WriteFile(kf, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := pagerduty.New(config.Desk{Name: "oncall", Type: config.DeskPagerDuty, Role: config.RolePager,
		URL: url + "/v2/enqueue", RoutingKeyFile: kf}, nil, pagerduty.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pageEvent(c rma.Case, seq int) rma.DeskEvent {
	ev := desktest.Event(rma.EventPage, seq, c)
	ev.Page = &rma.Page{Text: "Severity 1: call the vendor now", Phone: "+44 20 7946 0000", Region: "emea", VendorRef: "CS-4711"}
	return ev
}

// TestPageResolveLifecycle: a page triggers one alert with dedup_key =
// the case's dedup key, a summary that says whom to call and the vendor
// reference, and the case facts; a second page for the same key adds to
// it; an update sends nothing; the close resolves it.
func TestPageResolveLifecycle(t *testing.T) {
	t.Parallel()
	f := newFakeEvents(t)
	d := newDesk(t, f.srv.URL, routingKey)
	c := desktest.Case("HA-1")
	ctx := context.Background()
	for seq, ev := range []rma.DeskEvent{pageEvent(c, 2), pageEvent(c, 2), desktest.Event(rma.EventUpdated, 3, c), desktest.Event(rma.EventClosed, 4, c)} {
		id, _, err := d.Send(ctx, desktest.Message(t, "oncall", ev, "", false))
		if err != nil {
			t.Fatalf("event %d (%s): %v", seq, ev.Event, err)
		}
		if want := c.DedupKey; ev.Event != rma.EventUpdated && id != want {
			t.Errorf("%s answered %q, want the dedup key %q", ev.Event, id, want)
		}
	}
	events, alerts, opened := f.snapshot()
	if len(events) != 3 || opened != 1 || alerts[c.DedupKey] != "resolved" {
		t.Fatalf("%d events, %d alerts opened, alert %q; want trigger, trigger, resolve of one alert", len(events), opened, alerts[c.DedupKey])
	}
	p := events[0].Payload
	if events[0].EventAction != "trigger" || events[0].DedupKey != c.DedupKey || p.Severity != "critical" || p.Source != "hsm-HA-1" || p.Component != "SN-HA-1" {
		t.Errorf("trigger %+v payload %+v", events[0], p)
	}
	for _, want := range []string{"call the vendor on +44 20 7946 0000", "vendor ticket CS-4711", "SN-HA-1"} {
		if !strings.Contains(p.Summary, want) {
			t.Errorf("summary %q lacks %q", p.Summary, want)
		}
	}
	for k, want := range map[string]string{"Serial": "SN-HA-1", "Environment": "production", "Tier": "premium-plus",
		"Pool impact": "payments 1 of 2 members healthy", "Model": desk.NotReported, "Call": "+44 20 7946 0000"} {
		if p.CustomDetails[k] != want {
			t.Errorf("custom_details[%s] = %q, want %q", k, p.CustomDetails[k], want)
		}
	}
	if events[2].EventAction != "resolve" || events[2].DedupKey != c.DedupKey {
		t.Errorf("close sent %+v", events[2])
	}
}

// TestSeverityMapping: severity 1-4 go out as critical, error, warning,
// info.
func TestSeverityMapping(t *testing.T) {
	t.Parallel()
	f := newFakeEvents(t)
	d := newDesk(t, f.srv.URL, routingKey)
	want := map[int]string{1: "critical", 2: "error", 3: "warning", 4: "info"}
	for sev := 1; sev <= 4; sev++ {
		c := desktest.Case("HA-" + want[sev])
		c.Severity = sev
		if _, _, err := d.Send(context.Background(), desktest.Message(t, "oncall", pageEvent(c, 2), "", false)); err != nil {
			t.Fatal(err)
		}
	}
	events, _, _ := f.snapshot()
	for i, ev := range events {
		if ev.Payload.Severity != want[i+1] {
			t.Errorf("severity %d went out as %q, want %q", i+1, ev.Payload.Severity, want[i+1])
		}
	}
	if pagerduty.Severity(0) != "info" {
		t.Errorf("Severity(0) = %q", pagerduty.Severity(0))
	}
}

// TestDeskTest: the test triggers a clearly marked alert and resolves it
// at once, and says so; a refused routing key is parked with what to fix
// and the key never appears.
func TestDeskTest(t *testing.T) {
	t.Parallel()
	f := newFakeEvents(t)
	got, err := desk.Test(context.Background(), newDesk(t, f.srv.URL, routingKey))
	if err != nil || !strings.HasPrefix(got, "hsm-agent-desk-test-") || !strings.Contains(got, "triggered and resolved") {
		t.Fatalf("desk test: %q, %v", got, err)
	}
	events, alerts, _ := f.snapshot()
	if len(events) != 2 || events[0].EventAction != "trigger" || !strings.Contains(events[0].Payload.Summary, desk.TestSummary) ||
		events[1].EventAction != "resolve" || alerts[events[0].DedupKey] != "resolved" {
		t.Errorf("test events %+v", events)
	}
	_, err = desk.Test(context.Background(), newDesk(t, f.srv.URL, "wrong-key"))
	if err == nil || !strings.Contains(err.Error(), "routing_key_file") || strings.Contains(err.Error(), "wrong-key") {
		t.Errorf("desk test with a refused key: %v", err)
	}
	_, retryable, err := newDesk(t, f.srv.URL, "wrong-key").Send(context.Background(), desktest.Message(t, "oncall", pageEvent(desktest.Case("HA-2"), 2), "", false))
	if err == nil || retryable {
		t.Errorf("a 400 must park the row: retryable %v, err %v", retryable, err)
	}
}

// TestOutboxRetriesMakeNoDuplicate drives the page through the real
// outbox worker and SQLite store: a 429 with Retry-After and a 500 then
// 202 each end in one delivered row and one alert.
func TestOutboxRetriesMakeNoDuplicate(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]func(n int, w http.ResponseWriter) bool{
		"429 Retry-After": func(n int, w http.ResponseWriter) bool {
			if n == 0 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			}
			return false
		},
		"500 then 202": func(n int, w http.ResponseWriter) bool {
			if n == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				return true
			}
			return false
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFakeEvents(t)
			f.answer = answer
			c := desktest.Case("HA-9")
			row, stored := desktest.Outbox(t, newDesk(t, f.srv.URL, routingKey), c, rma.EventPage, "")
			_, alerts, opened := f.snapshot()
			if row.State != rma.DeliveryDelivered || row.Attempts != 2 || opened != 1 || alerts[c.DedupKey] != "triggered" {
				t.Fatalf("row %s after %d attempts (%s); %d alerts; want delivered on the second attempt, one alert", row.State, row.Attempts, row.LastError, opened)
			}
			if stored.DeskRefs["oncall"] != c.DedupKey {
				t.Errorf("desk ref %q", stored.DeskRefs["oncall"])
			}
		})
	}
}
