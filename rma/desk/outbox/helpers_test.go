package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// memStore is an in-memory OutboxStore for the worker's unit tests; it
// follows the store's documented contract (rows in queue order, attempts
// counted, ErrNoChange for settled rows).
type memStore struct {
	mu       sync.Mutex
	rows     []rma.Delivery
	attempts map[int64][]store.Attempt
	dueCalls int
	dueErr   error
}

func newMemStore() *memStore { return &memStore{attempts: map[int64][]store.Attempt{}} }

func (s *memStore) enqueue(deskName, caseID string, seq int, bundlePath string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := int64(len(s.rows) + 1)
	now := time.Now()
	s.rows = append(s.rows, rma.Delivery{ID: id, CaseID: caseID, Seq: seq, Desk: deskName,
		IdempotencyKey: rma.IdempotencyKey(caseID, seq), Payload: eventPayload(caseID, seq),
		BundlePath: bundlePath, State: rma.DeliveryPending, NextAttempt: now, CreatedAt: now})
	return id
}

func (s *memStore) DueDeliveries(ctx context.Context, deskName string, now time.Time, limit int) ([]rma.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dueCalls++
	if s.dueErr != nil {
		return nil, s.dueErr
	}
	var out []rma.Delivery
	for _, r := range s.rows {
		if r.Desk == deskName && r.State == rma.DeliveryPending && !r.NextAttempt.After(now) {
			out = append(out, r)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (s *memStore) RecordAttempt(ctx context.Context, id int64, a store.Attempt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.rows[id-1]
	if r.State != rma.DeliveryPending {
		return fmt.Errorf("row %d is %s: %w", id, r.State, store.ErrNoChange)
	}
	r.Attempts++
	r.LastError = a.Err
	switch {
	case a.Delivered:
		r.State, r.TicketID, r.DeliveredAt = rma.DeliveryDelivered, a.TicketID, a.At
	case a.Parked:
		r.State = rma.DeliveryParked
	default:
		r.NextAttempt = a.NextAttempt
	}
	s.attempts[id] = append(s.attempts[id], a)
	return nil
}

func (s *memStore) OutboxCounts(ctx context.Context) (map[string]store.OutboxCount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]store.OutboxCount{}
	for _, r := range s.rows {
		c := out[r.Desk]
		switch r.State {
		case rma.DeliveryPending:
			c.Pending++
		case rma.DeliveryParked:
			c.Parked++
		default:
			continue
		}
		out[r.Desk] = c
	}
	return out, nil
}

func (s *memStore) row(id int64) rma.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[id-1]
}

func (s *memStore) history(id int64) []store.Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Attempt(nil), s.attempts[id]...)
}

func (s *memStore) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dueCalls
}

func (s *memStore) setDueErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dueErr = err
}

// countState counts the rows of a desk in a state.
func (s *memStore) countState(deskName, state string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.rows {
		if r.Desk == deskName && r.State == state {
			n++
		}
	}
	return n
}

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

// deskServer is an httptest webhook desk. It records every request and
// answers with respond (nil: 200 with a ticket ID per idempotency key).
type deskServer struct {
	mu      sync.Mutex
	hits    []deskHit
	perKey  map[string]int
	respond func(n int, key string, w http.ResponseWriter, r *http.Request)
	srv     *httptest.Server
}

type deskHit struct {
	at   time.Time
	key  string
	body []byte
}

func newDeskServer(t testing.TB, respond func(n int, key string, w http.ResponseWriter, r *http.Request)) *deskServer {
	t.Helper()
	s := &deskServer{perKey: map[string]int{}, respond: respond}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

// newDeskServerAt starts the desk on a given address (the one a desk that
// was down comes back on).
func newDeskServerAt(t testing.TB, addr string, respond func(n int, key string, w http.ResponseWriter, r *http.Request)) *deskServer {
	t.Helper()
	s := &deskServer{perKey: map[string]int{}, respond: respond}
	var l net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; retry briefly if TIME_WAIT holds it
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *deskServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	n := len(s.hits)
	s.hits = append(s.hits, deskHit{at: time.Now(), key: key, body: body})
	s.mu.Unlock()
	if s.respond != nil {
		s.respond(n, key, w, r)
	} else {
		okTicket(w, key)
	}
	s.mu.Lock()
	s.perKey[key]++ // counted once answered
	s.mu.Unlock()
}

func okTicket(w http.ResponseWriter, key string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"ticket_id":"T-%s"}`, key)
}

func (s *deskServer) all() []deskHit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]deskHit(nil), s.hits...)
}

func (s *deskServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hits)
}

func (s *deskServer) keyCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.perKey))
	for k, v := range s.perKey {
		out[k] = v
	}
	return out
}

// freeAddr returns a loopback address nothing listens on (a desk that is down).
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// fastHTTP: a desk timeout that a loaded machine meets.
var fastHTTP = webhook.Options{Version: "test", Timeout: 5 * time.Second}

func webhookDesk(t testing.TB, name, url string, rate int, o webhook.Options) desk.Desk {
	t.Helper()
	d, err := webhook.New(config.Desk{Name: name, Type: config.DeskWebhook, URL: url, RatePerMinute: rate}, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fastWorker: quick polls and backoff.
func fastWorker(log *slog.Logger) outbox.Options {
	return outbox.Options{Logger: log, PollInterval: 10 * time.Millisecond, RetryMin: 20 * time.Millisecond,
		RetryMax: 100 * time.Millisecond}
}

// runWorker runs w until the test ends (or stop is called) and checks
// that Run returns nil.
func runWorker(t testing.TB, w *outbox.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct{ testutil.SyncBuffer }

func (b *logBuffer) count(s string) int { return strings.Count(b.String(), s) }

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// counterValue reads hsm_desk_deliveries_total{desk, result} from w.
func counterValue(t testing.TB, w *outbox.Worker, deskName, result string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(w); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != outbox.MetricDeliveries {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["desk"] == deskName && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
