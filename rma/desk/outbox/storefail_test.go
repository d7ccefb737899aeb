package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// failOutboxWrites makes every write to the outbox table of the real
// SQLite file behind st fail (as a full disk or a read-only database would)
// until the returned function is called. It works through a second
// connection, as another process would see the file.
func failOutboxWrites(t *testing.T, st *store.Store) (recover func()) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+st.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec(`CREATE TRIGGER test_disk_full BEFORE UPDATE ON outbox
		BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := db.Exec(`DROP TRIGGER test_disk_full`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreWriteFailsAfterDeskAccepted: the desk answers 2xx but the store
// cannot record it. The worker must not send the event again while the
// store fails (it used to re-send it at every poll: 40+ POSTs of one
// event); it backs off, logs the failure once and records the delivery
// exactly once when the store works again. The desk counts raw POSTs.
func TestStoreWriteFailsAfterDeskAccepted(t *testing.T) {
	t.Parallel()
	srv := newDeskServer(t, nil)
	st := openStore(t)
	id := openCases(t, st, 1, "vendor")[0]
	recoverStore := failOutboxWrites(t, st)

	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := outbox.NewWorker(st, []desk.Desk{webhookDesk(t, "vendor", srv.srv.URL, 0, fastHTTP)}, fastWorker(log))
	runWorker(t, w)
	// Six failed writes in a row: the backoff schedule has run a while.
	waitFor(t, 30*time.Second, "repeated store failures", func() bool {
		return logs.count("outbox store still failing")+logs.count("outbox store failing;") >= 6
	})
	if n := srv.count(); n != 1 {
		t.Errorf("desk got %d POSTs while the store failed, want 1 (the event must not be re-sent)", n)
	}
	recoverStore()
	ctx := context.Background()
	waitFor(t, 30*time.Second, "the delivery recorded", func() bool {
		ds, err := st.Deliveries(ctx, id)
		return err == nil && len(ds) == 1 && ds[0].State == rma.DeliveryDelivered
	})
	if n := srv.count(); n != 1 {
		t.Errorf("desk got %d POSTs in all, want 1", n)
	}
	ds, _ := st.Deliveries(ctx, id)
	if ds[0].Attempts != 1 || ds[0].TicketID != "T-"+id+":1" {
		t.Errorf("delivery row %+v; want 1 attempt with ticket T-%s:1", ds[0], id)
	}
	events, err := st.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, ev := range events {
		var d struct {
			Outcome string `json:"outcome"`
		}
		if ev.Type == rma.EventDelivery && json.Unmarshal(ev.Data, &d) == nil && d.Outcome == "delivered" {
			delivered++
		}
	}
	if delivered != 1 {
		t.Errorf("case log has %d delivered events, want 1", delivered)
	}
	if n := logs.count("outbox store failing;"); n != 1 {
		t.Errorf("store failure logged %d times at error level, want once:\n%s", n, logs)
	}
	if n := logs.count("outbox store works again"); n != 1 {
		t.Errorf("store recovery logged %d times, want once", n)
	}
}
