package main

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// TestKillLoopWithFailingStoreCountsPosts: the desks accept every event
// but the state DB cannot record a delivery (every outbox update fails, as
// on a full disk or a read-only file). The daemon is killed with SIGKILL
// and restarted several times while that lasts. Counting the raw POSTs at
// the desk: each daemon sends each event once (the restart resends it with
// the same Idempotency-Key, since it was never recorded), never again in a
// loop while the store fails; once the store works, each delivery is
// recorded and each desk holds exactly one ticket.
func TestKillLoopWithFailingStoreCountsPosts(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, false)
	listen := freePort(t)
	cfgFile, fleet, faults := caseSite(t, 1, listen, desk, "")
	dbPath := filepath.Join(filepath.Dir(cfgFile), "state", "hsm-agent.db")
	st, err := store.Open(dbPath) // create the schema the trigger needs
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER test_disk_full BEFORE UPDATE ON outbox
		BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}

	const lives = 4
	d := startDaemon(t, cfgFile)
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, fleet.Tokens[0].Serial), 20*time.Second)
	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	for life := 1; ; life++ {
		waitUntilT(t, 60*time.Second, fmt.Sprintf("daemon %d sends both events", life), func() bool {
			return len(desk.all("vendor")) >= life && len(desk.all("internal")) >= life
		})
		// Long enough for several worker polls (1 s) and store writes:
		// the old worker re-sent the event at each of them.
		time.Sleep(3 * time.Second)
		if life == lives {
			break
		}
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-d.exited
		d = startDaemon(t, cfgFile)
	}
	for _, name := range []string{"vendor", "internal"} {
		perKey := map[string]int{}
		for _, c := range desk.all(name) {
			perKey[c.Key]++
		}
		for key, n := range perKey {
			if n > lives {
				t.Errorf("%s desk: %d POSTs of %s while the store failed, over %d daemon lives; want at most one per life", name, n, key, lives)
			}
		}
	}

	if _, err := db.Exec(`DROP TRIGGER test_disk_full`); err != nil {
		t.Fatal(err)
	}
	waitUntilT(t, 90*time.Second, "both deliveries recorded", func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM outbox WHERE state = 'delivered'`).Scan(&n)
		return err == nil && n == 2
	})
	for _, name := range []string{"vendor", "internal"} {
		if n := desk.ticketCount(name); n != 1 {
			t.Errorf("%s desk has %d tickets, want exactly 1", name, n)
		}
		if n := len(desk.all(name)); n > lives {
			t.Errorf("%s desk got %d POSTs in all, want at most %d", name, n, lives)
		}
	}
	if cases := casesJSON(t, cfgFile); len(cases) != 1 {
		t.Errorf("want exactly one case, got %d", len(cases))
	}
}
