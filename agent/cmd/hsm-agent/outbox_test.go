package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// TestOutboxListAndRetry: a desk refuses a case's event with a 400, the
// row parks; `hsm-agent outbox` lists it with its last error; once the
// desk is fixed, `outbox retry --all` requeues it and the running daemon
// delivers it with no restart.
func TestOutboxListAndRetry(t *testing.T) {
	t.Parallel()
	var accept atomic.Bool
	var delivered atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accept.Load() {
			http.Error(w, "unknown routing key", http.StatusBadRequest)
			return
		}
		delivered.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"ticket_id": "VND-1"}`)
	}))
	t.Cleanup(srv.Close)
	listen := freePort(t)
	desks := fmt.Sprintf("desks:\n  - {name: vendor, type: webhook, role: vendor, url: %q, phones: {emea: \"+44 20 0000 0000\"}}\n", srv.URL)
	cfgFile, fleet, faults := caseSite(t, 1, listen, nil, desks)
	startDaemon(t, cfgFile)
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, fleet.Tokens[0].Serial), 20*time.Second)
	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}

	var parked []rma.Delivery
	waitUntilT(t, 60*time.Second, "a parked outbox row", func() bool {
		code, out, _ := hsmAgent(t, "outbox", "--json", "--config", cfgFile)
		parked = nil
		return code == 0 && json.Unmarshal([]byte(out), &parked) == nil && len(parked) > 0
	})
	p := parked[0]
	if p.Desk != "vendor" || p.Seq != 1 || p.Attempts != 1 || !strings.Contains(p.LastError, "400") {
		t.Errorf("parked row: %+v", p)
	}
	code, out, errOut := hsmAgent(t, "outbox", "--config", cfgFile)
	if code != 0 || !strings.Contains(out, "LAST ERROR") || !strings.Contains(out, p.CaseID) || !strings.Contains(out, "400") {
		t.Errorf("outbox table: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := hsmAgent(t, "outbox", "retry", "999999", "--config", cfgFile); code != 1 || !strings.Contains(errOut, "no outbox row 999999") {
		t.Errorf("retry of an unknown row: exit %d, %s", code, errOut)
	}

	accept.Store(true)
	if code, out, errOut := hsmAgent(t, "outbox", "retry", "--all", "--config", cfgFile); code != 0 || !strings.Contains(out, fmt.Sprintf("outbox row %d requeued", p.ID)) {
		t.Fatalf("outbox retry --all: exit %d\n%s%s", code, out, errOut)
	}
	waitUntilT(t, 30*time.Second, "the requeued row delivered by the running daemon", func() bool {
		return caseRef(t, cfgFile, p.CaseID) == "VND-1"
	})
	if code, out, _ := hsmAgent(t, "outbox", "--config", cfgFile); code != 0 || !strings.Contains(out, "no parked outbox rows") {
		t.Errorf("after retry: exit %d\n%s", code, out)
	}
}

// caseRef is the vendor desk's ticket on the case, as the CLI shows it.
func caseRef(t *testing.T, cfgFile, id string) string {
	for _, c := range casesJSON(t, cfgFile) {
		if c.ID == id {
			return c.DeskRefs["vendor"]
		}
	}
	return ""
}
