package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// The worker against the real SQLite store (rma/store).

var _ outbox.Store = (*store.Store)(nil)

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state", "hsm-agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// openCases queues n cases with one event each for every desk, as the
// engine does: the case, its first event and its outbox rows in one
// transaction. It returns the case IDs.
func openCases(t testing.TB, st *store.Store, n int, desks ...string) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, n)
	for i := range n {
		c := testCase(fmt.Sprintf("HA-%08d", i))
		c.DedupKey = fmt.Sprintf("SN%08d/hardware/missing", i)
		var out []rma.Delivery
		for _, d := range desks {
			out = append(out, rma.Delivery{Desk: d, Payload: eventPayload(c.ID, 1)})
		}
		got, err := st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, Actor: "agent"}, out)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.ID)
	}
	return ids
}

func storeCounts(t testing.TB, st *store.Store, deskName string) store.OutboxCount {
	t.Helper()
	c, err := st.OutboxCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c[deskName]
}

// TestWithStoreRetriesThenTicket: 500 three times then 200 against the
// real store: one ticket kept as the case's desk reference, four attempts
// in the case log, the same key on all four.
func TestWithStoreRetriesThenTicket(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(n int, key string, w http.ResponseWriter, _ *http.Request) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		okTicket(w, key)
	})
	st := openStore(t)
	id := openCases(t, st, 1, "vendor")[0]
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	ctx := context.Background()
	waitFor(t, 20*time.Second, "delivery", func() bool {
		ds, err := st.Deliveries(ctx, id)
		return err == nil && len(ds) == 1 && ds[0].State == rma.DeliveryDelivered
	})
	c, err := st.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := "T-" + id + ":1"; c.DeskRefs["vendor"] != want {
		t.Errorf("case desk ref %q, want %q", c.DeskRefs["vendor"], want)
	}
	events, err := st.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, ev := range events {
		if ev.Type != rma.EventDelivery {
			continue
		}
		var d struct {
			Outcome string `json:"outcome"`
			Status  int    `json:"status"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		outcomes = append(outcomes, fmt.Sprintf("%s/%d", d.Outcome, d.Status))
		if ev.Actor != "desk:vendor" {
			t.Errorf("delivery event actor %q", ev.Actor)
		}
	}
	if got := fmt.Sprint(outcomes); got != "[retry/500 retry/500 retry/500 delivered/0]" {
		t.Errorf("case log delivery outcomes %s", got)
	}
	for _, h := range srv.all() {
		if h.key != id+":1" {
			t.Errorf("Idempotency-Key %q, want %s:1", h.key, id)
		}
	}
}

// TestWithStoreParkedAndDeskDown: against the real store, a 400 parks (kept,
// counted as parked) while a down desk keeps its events pending until it
// returns, then gets each exactly once.
func TestWithStoreParkedAndDeskDown(t *testing.T) {
	t.Parallel()
	refusing := newDeskServer(t, func(_ int, _ string, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	})
	addr := freeAddr(t)
	st := openStore(t)
	ids := openCases(t, st, 10, "refusing", "later")
	w := outbox.NewWorker(st, []desk.Desk{
		webhookDesk(t, "refusing", refusing.srv.URL, 0, fastHTTP),
		webhookDesk(t, "later", "http://"+addr, 0, fastHTTP),
	}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "all parked", func() bool { return storeCounts(t, st, "refusing").Parked == 10 })
	if c := storeCounts(t, st, "later"); c.Pending != 10 {
		t.Fatalf("down desk: %+v, want 10 pending", c)
	}
	if n := refusing.count(); n != 10 {
		t.Errorf("refusing desk got %d requests, want 10 (no retries)", n)
	}

	srv := newDeskServerAt(t, addr, nil)
	waitFor(t, 20*time.Second, "the desk that came back", func() bool { return storeCounts(t, st, "later").Pending == 0 })
	counts := srv.keyCounts()
	for _, id := range ids {
		if counts[id+":1"] != 1 {
			t.Errorf("%s:1 delivered %d times", id, counts[id+":1"])
		}
	}
	if c := storeCounts(t, st, "refusing"); c.Parked != 10 || c.Pending != 0 {
		t.Errorf("refused events %+v; want still 10 parked", c)
	}
}

// TestWithStoreDrainExactlyOnce: events queued during an outage drain to a
// local desk exactly once (fewer than the benchmark's 10,000 to stay fast).
func TestWithStoreDrainExactlyOnce(t *testing.T) {
	t.Parallel()
	const n = 1000
	srv := newDeskServer(t, nil)
	st := openStore(t)
	ids := openCases(t, st, n, "vendor")
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 60*time.Second, "drain", func() bool { return storeCounts(t, st, "vendor").Pending == 0 })
	counts := srv.keyCounts()
	if len(counts) != n {
		t.Errorf("desk got %d distinct events, want %d", len(counts), n)
	}
	for _, id := range ids {
		if counts[id+":1"] != 1 {
			t.Errorf("%s:1 delivered %d times", id, counts[id+":1"])
		}
	}
}

// BenchmarkDrain10000 queues 10,000 events in the real store while no
// worker runs (an outage), then times how long the worker takes to drain
// them to a local webhook desk, each exactly once. Goal: <= 60 s.
//
//	go test ./rma/desk/ -run '^$' -bench Drain10000 -benchtime 1x
func BenchmarkDrain10000(b *testing.B) {
	const n = 10000
	for range b.N {
		b.StopTimer()
		srv := newDeskServer(b, nil)
		st := openStore(b)
		openCases(b, st, n, "vendor")
		w := outbox.NewWorker(st, []desk.Desk{webhookDesk(b, "vendor", srv.srv.URL, 0, fastHTTP)},
			outbox.Options{PollInterval: 10 * time.Millisecond})
		b.StartTimer()
		start := time.Now()
		stop := runWorker(b, w)
		waitFor(b, 10*time.Minute, "drain", func() bool { return srv.count() >= n && storeCounts(b, st, "vendor").Pending == 0 })
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		counts := srv.keyCounts()
		if len(counts) != n {
			b.Fatalf("desk got %d distinct events, want %d", len(counts), n)
		}
		for k, c := range counts {
			if c != 1 {
				b.Fatalf("%s delivered %d times", k, c)
			}
		}
		b.ReportMetric(elapsed.Seconds(), "s/drain")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.StartTimer()
	}
}
