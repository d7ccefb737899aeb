package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// TestWorkerRetriesUntilDelivered: the desk answers 500 three times then
// 200: four worker attempts, one ticket, the same Idempotency-Key on all
// four, and every attempt recorded.
func TestWorkerRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(n int, key string, w http.ResponseWriter, _ *http.Request) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		okTicket(w, key)
	})
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "delivery", func() bool { return st.row(id).State == rma.DeliveryDelivered })

	row := st.row(id)
	if row.Attempts != 4 || row.TicketID != "T-c1:1" {
		t.Errorf("row: %d attempts, ticket %q; want 4, T-c1:1", row.Attempts, row.TicketID)
	}
	hits := srv.all()
	if len(hits) != 4 {
		t.Fatalf("desk got %d requests, want 4", len(hits))
	}
	for i, h := range hits {
		if h.key != "c1:1" {
			t.Errorf("attempt %d: Idempotency-Key %q, want c1:1", i+1, h.key)
		}
	}
	hist := st.history(id)
	for i, a := range hist[:3] {
		if a.Delivered || a.Parked || a.Status != 500 || !a.NextAttempt.After(a.At) || !strings.Contains(a.Err, "500") {
			t.Errorf("attempt %d recorded as %+v; want a retry after HTTP 500", i+1, a)
		}
	}
	if !hist[3].Delivered || hist[3].TicketID != "T-c1:1" {
		t.Errorf("last attempt recorded as %+v", hist[3])
	}
	if got := counterValue(t, w, "vendor", "status_5xx"); got != 3 {
		t.Errorf("status_5xx attempts counted %v, want 3", got)
	}
	if got := counterValue(t, w, "vendor", desk.ResultSuccess); got != 1 {
		t.Errorf("successes counted %v, want 1", got)
	}
}

// TestWorkerHonoursRetryAfter: 429 with Retry-After: 2 (longer than the
// backoff): the worker schedules the next attempt 2 s later, and the desk
// sees it no sooner.
func TestWorkerHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(n int, key string, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		okTicket(w, key)
	})
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "delivery", func() bool { return st.row(id).State == rma.DeliveryDelivered })

	hits := srv.all()
	if len(hits) != 2 {
		t.Fatalf("desk got %d requests, want 2", len(hits))
	}
	if gap := hits[1].at.Sub(hits[0].at); gap < 2*time.Second {
		t.Errorf("second attempt %v after the 429, want >= 2s", gap)
	}
	first := st.history(id)[0]
	if wait := first.NextAttempt.Sub(first.At); wait != 2*time.Second || first.Status != 429 {
		t.Errorf("429 recorded with next attempt %v later (status %d), want 2s", wait, first.Status)
	}
	if got := counterValue(t, w, "vendor", "status_429"); got != 1 {
		t.Errorf("status_429 counted %v, want 1", got)
	}
}

// TestWorkerParksClientErrors: a 400 parks the event (kept, shown as
// failed, not retried, not dropped) and the desk goes on with the next.
func TestWorkerParksClientErrors(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(_ int, key string, w http.ResponseWriter, _ *http.Request) {
		if key == "bad:1" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"unknown severity"}`))
			return
		}
		okTicket(w, key)
	})
	st := newMemStore()
	bad := st.enqueue("vendor", "bad", 1, "")
	good := st.enqueue("vendor", "good", 1, "")
	log, logs := newLog()
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(log))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "the good event", func() bool { return st.row(good).State == rma.DeliveryDelivered })
	polls := st.calls()
	waitFor(t, 20*time.Second, "more polls", func() bool { return st.calls() > polls+10 })

	row := st.row(bad)
	if row.State != rma.DeliveryParked || row.Attempts != 1 || !strings.Contains(row.LastError, "400") || !strings.Contains(row.LastError, "unknown severity") {
		t.Errorf("bad row: %+v; want parked after 1 attempt with the 400 in its error", row)
	}
	if n := srv.keyCounts()["bad:1"]; n != 1 {
		t.Errorf("the refused event was sent %d times, want 1", n)
	}
	if !strings.Contains(logs.String(), "parked") {
		t.Errorf("no log line about the parked event:\n%s", logs)
	}
	want := `
# HELP hsm_outbox_parked Case events the desk refused for good (a non-retryable answer): kept and shown as failed, not delivered.
# TYPE hsm_outbox_parked gauge
hsm_outbox_parked{desk="vendor"} 1
# HELP hsm_outbox_pending Case events waiting for delivery to the desk, retries included.
# TYPE hsm_outbox_pending gauge
hsm_outbox_pending{desk="vendor"} 0
# HELP hsm_desk_deliveries_total Delivery attempts of case events by desk and result: success, or the reason of the failure (timeout, connection, status_4xx, status_5xx, status_429, bad_response, write_error, bundle_error, invalid).
# TYPE hsm_desk_deliveries_total counter
hsm_desk_deliveries_total{desk="vendor",result="status_4xx"} 1
hsm_desk_deliveries_total{desk="vendor",result="success"} 1
`
	if err := testutil.CollectAndCompare(w, strings.NewReader(want), "hsm_outbox_parked", "hsm_outbox_pending", "hsm_desk_deliveries_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(w, "hsm_desk_last_success_timestamp_seconds"); n != 1 {
		t.Errorf("%d last-success series, want 1", n)
	}
}

// TestWorkerDeskDownThenBack: the desk is down for a while: nothing is
// delivered, nothing lost, the failure is logged once; when it comes back
// every event is delivered exactly once, in queue order.
func TestWorkerDeskDownThenBack(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	st := newMemStore()
	var ids []int64
	for i := range 30 {
		ids = append(ids, st.enqueue("vendor", fmt.Sprintf("c%02d", i), 1+i%3, ""))
	}
	log, logs := newLog()
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", "http://"+addr+"/hook", 0, fastHTTP)}, fastWorker(log))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "several failed attempts", func() bool { return st.row(ids[0]).Attempts >= 4 })
	if n := st.countState("vendor", rma.DeliveryPending); n != 30 {
		t.Fatalf("%d of 30 events pending while the desk is down", n)
	}
	for _, id := range ids[1:] {
		if a := st.row(id).Attempts; a != 0 {
			t.Errorf("row %d tried %d times while the desk was held", id, a)
		}
	}
	if got := counterValue(t, w, "vendor", "connection"); got < 4 {
		t.Errorf("connection failures counted %v, want >= 4", got)
	}

	srv := newDeskServerAt(t, addr, nil)
	waitFor(t, 20*time.Second, "all delivered", func() bool { return st.countState("vendor", rma.DeliveryDelivered) == 30 })
	counts := srv.keyCounts()
	if len(counts) != 30 {
		t.Errorf("desk got %d distinct events, want 30", len(counts))
	}
	for k, n := range counts {
		if n != 1 {
			t.Errorf("event %s delivered %d times", k, n)
		}
	}
	hits := srv.all()
	for i, h := range hits {
		if want := st.row(ids[i]).IdempotencyKey; h.key != want {
			t.Errorf("delivery %d was %s, want %s (queue order)", i, h.key, want)
		}
	}
	if n := logs.count("desk delivery failing"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs)
	}
	if n := logs.count("desk delivers again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// TestOneDeskOutageDoesNotBlockAnother: one desk down, the other delivers.
func TestOneDeskOutageDoesNotBlockAnother(t *testing.T) {
	t.Parallel()
	up := newDeskServer(t, nil)
	st := newMemStore()
	for i := range 20 {
		st.enqueue("down", fmt.Sprintf("c%d", i), 1, "")
		st.enqueue("up", fmt.Sprintf("c%d", i), 1, "")
	}
	w := outbox.NewWorker(st, []desk.Desk{
		webhookDesk(t, "down", "http://"+freeAddr(t), 0, fastHTTP),
		webhookDesk(t, "up", up.srv.URL, 0, fastHTTP),
	}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "the up desk's events", func() bool { return st.countState("up", rma.DeliveryDelivered) == 20 })
	if n := st.countState("down", rma.DeliveryPending); n != 20 {
		t.Errorf("down desk: %d of 20 pending", n)
	}
}

// TestWorkerStopsCleanly: cancelled during an attempt, the worker returns
// and leaves the row pending and unrecorded; the next run delivers it once.
func TestWorkerStopsCleanly(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	hang := newDeskServer(t, func(_ int, _ string, _ http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	})
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", hang.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	stop := runWorker(t, w)
	<-started
	stop()
	if row := st.row(id); row.State != rma.DeliveryPending || row.Attempts != 0 {
		t.Fatalf("after stop: %+v; want pending, no attempt recorded", row)
	}

	good := newDeskServer(t, nil)
	w = outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", good.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 20*time.Second, "delivery after restart", func() bool { return st.row(id).State == rma.DeliveryDelivered })
	if n := good.keyCounts()["c1:1"]; n != 1 {
		t.Errorf("delivered %d times after restart, want 1", n)
	}
}

// TestKickWakesTheWorker: with an hour between polls, a Kick delivers a
// newly queued row at once.
func TestKickWakesTheWorker(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, nil)
	st := newMemStore()
	opts := fastWorker(nil)
	opts.PollInterval = time.Hour
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, opts)
	runWorker(t, w)
	waitFor(t, 10*time.Second, "the first poll", func() bool { return st.calls() >= 1 })
	id := st.enqueue("vendor", "c1", 1, "")
	w.Kick()
	waitFor(t, 10*time.Second, "delivery after Kick", func() bool { return st.row(id).State == rma.DeliveryDelivered })
}

// TestRateLimit: rate_per_minute 1200 spaces deliveries at least 50 ms apart.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, nil)
	st := newMemStore()
	for i := range 6 {
		st.enqueue("vendor", fmt.Sprintf("c%d", i), 1, "")
	}
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 1200, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 10*time.Second, "all delivered", func() bool { return st.countState("vendor", rma.DeliveryDelivered) == 6 })
	hits := srv.all()
	// 5 intervals of 50 ms = 250 ms; without the limit they take a few ms.
	// The margin absorbs the first request's connection setup.
	if span := hits[5].at.Sub(hits[0].at); span < 150*time.Millisecond {
		t.Errorf("6 deliveries at 20/s took %v, want about 250ms", span)
	}
}

// TestStoreFailureLoggedOnce: a failing store is logged once, then its
// recovery once, and the worker keeps going.
func TestStoreFailureLoggedOnce(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, nil)
	st := newMemStore()
	st.setDueErr(errors.New("database is locked"))
	log, logs := newLog()
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(log))
	runWorker(t, w)
	waitFor(t, 10*time.Second, "several polls", func() bool { return st.calls() >= 5 })
	st.setDueErr(nil)
	id := st.enqueue("vendor", "c1", 1, "")
	waitFor(t, 10*time.Second, "delivery", func() bool { return st.row(id).State == rma.DeliveryDelivered })
	if n := logs.count("outbox store failing"); n != 1 {
		t.Errorf("store failure logged %d times, want once:\n%s", n, logs)
	}
	if n := logs.count("outbox store works again"); n != 1 {
		t.Errorf("store recovery logged %d times, want once", n)
	}
}

func TestDuplicateDeskNamesAreAnError(t *testing.T) {
	t.Parallel()
	d := webhookDesk(t, "vendor", "http://127.0.0.1:1", 0, fastHTTP)
	w := outbox.NewWorker(newMemStore(), []desk.Desk{d, d}, outbox.Options{})
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "vendor") {
		t.Errorf("Run with a desk twice: %v", err)
	}
}

// TestDrainExactlyOnce: many queued events drain to a local desk, each
// exactly once (the benchmark in store_test.go carries the 10,000-event
// number against the real store).
func TestDrainExactlyOnce(t *testing.T) {
	t.Parallel()
	const n = 2000
	srv := newDeskServer(t, nil)
	st := newMemStore()
	for i := range n {
		st.enqueue("vendor", fmt.Sprintf("c%d", i/2), 1+i%2, "")
	}
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(nil))
	runWorker(t, w)
	waitFor(t, 60*time.Second, "drain", func() bool { return st.countState("vendor", rma.DeliveryDelivered) == n })
	counts := srv.keyCounts()
	if len(counts) != n {
		t.Errorf("desk got %d distinct events, want %d", len(counts), n)
	}
	for k, c := range counts {
		if c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
	}
}

// TestWorkerOneRequestPerAttempt: the outbox is the one retry layer. A desk
// that answers 500 gets exactly one request per recorded attempt (a Send
// that retried inside itself would show more requests than attempts).
func TestWorkerOneRequestPerAttempt(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(_ int, _ string, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	opts := fastWorker(nil)
	// At least 1 s between attempts: the requests counted below belong
	// to the attempts recorded, none to the next one.
	opts.RetryMin, opts.RetryMax = 2*time.Second, 2*time.Second
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, webhook.Options{})}, opts)
	runWorker(t, w)
	waitFor(t, 60*time.Second, "two attempts", func() bool { return st.row(id).Attempts >= 2 })
	attempts, hits := st.row(id).Attempts, srv.count()
	if hits != attempts {
		t.Errorf("desk got %d requests for %d attempts; want exactly one request per attempt", hits, attempts)
	}
	for i, a := range st.history(id) {
		if a.Status != http.StatusInternalServerError || a.Delivered || a.Parked {
			t.Errorf("attempt %d recorded as %+v; want a retry after HTTP 500", i+1, a)
		}
	}
	if got := counterValue(t, w, "vendor", "status_5xx"); got != float64(attempts) {
		t.Errorf("status_5xx counted %v, want %d (one per attempt)", got, attempts)
	}
}

// TestWorkerCapsRetryAfter: the desk asks for a day (Retry-After: 86400);
// the worker waits its MaxRetryAfter instead, then delivers. The desk
// hands the wait back uncapped: the cap is the worker's alone.
func TestWorkerCapsRetryAfter(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, func(n int, key string, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		okTicket(w, key)
	})
	st := newMemStore()
	id := st.enqueue("vendor", "c1", 1, "")
	opts := fastWorker(nil)
	opts.MaxRetryAfter = 300 * time.Millisecond
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, opts)
	runWorker(t, w)
	waitFor(t, 20*time.Second, "delivery", func() bool { return st.row(id).State == rma.DeliveryDelivered })

	first := st.history(id)[0]
	if wait := first.NextAttempt.Sub(first.At); wait != opts.MaxRetryAfter || first.Status != http.StatusServiceUnavailable {
		t.Errorf("503 with Retry-After 86400 recorded with next attempt %v later (status %d); want the cap %v", wait, first.Status, opts.MaxRetryAfter)
	}
	if n := srv.count(); n != 2 {
		t.Errorf("desk got %d requests, want 2", n)
	}
}
