package rma_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// TestCaseWithoutBundleSaysSoAndTheBundleFollows: the disk is full when a
// case opens, so its bundle cannot be written. The case goes out at once
// without it, and every desk that should have had the bundle is told why
// in the event it gets ("diagnostics bundle could not be written: no space
// left on device; it will follow"). While the disk stays full nothing more
// is sent; once space returns, one case.bundle event carries the bundle to
// the vendor and internal desks (never the pager), exactly once.
func TestCaseWithoutBundleSaysSoAndTheBundleFollows(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.diskFull.Store(true)
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	h.clock.Advance(2 * time.Minute) // the page goes out after its fallback
	h.e.CheckPagesNow()

	const want = "diagnostics bundle could not be written: no space left on device; it will follow"
	for _, d := range h.deliveries(c.ID) {
		var ev rma.DeskEvent
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if d.BundlePath != "" {
			t.Errorf("row for %s has bundle %s while the disk is full", d.Desk, d.BundlePath)
		}
		switch {
		case d.Desk == "pager" && ev.BundleNote != "":
			t.Errorf("the pager got a bundle note: %q", ev.BundleNote)
		case d.Desk != "pager" && ev.BundleNote != want:
			t.Errorf("%s %s: bundle_note %q, want %q", d.Desk, ev.Event, ev.BundleNote, want)
		}
		if strings.Contains(ev.BundleNote, h.dir) {
			t.Errorf("the note leaks the state path: %q", ev.BundleNote)
		}
	}
	if _, owed := c.Due[rma.DueBundle]; !owed {
		t.Fatalf("case due %v: want the bundle marked as owed", c.Due)
	}
	rowsBefore := h.rows(c.ID)

	// Still full: retries (after the retry interval) send nothing.
	for range 3 {
		h.clock.Advance(10 * time.Minute)
		h.e.CheckPagesNow()
	}
	equal(t, "rows while the disk is full", h.rows(c.ID), rowsBefore)

	h.diskFull.Store(false)
	h.clock.Advance(10 * time.Minute)
	h.e.CheckPagesNow()
	h.e.CheckPagesNow() // a second check sends nothing more
	got := h.rows(c.ID)
	equal(t, "rows after space returned", got, append(append([]string(nil), rowsBefore...), "vendor:case.bundle", "ops:case.bundle"))
	for _, d := range h.deliveries(c.ID) {
		if d.Seq == len(h.events(c.ID)) { // the case.bundle rows
			if d.BundlePath == "" {
				t.Errorf("case.bundle row for %s carries no bundle", d.Desk)
			}
			if d.Desk == "vendor" && !d.WithholdBundle {
				t.Errorf("the approve-only vendor desk gets the bundle without approval")
			}
		}
	}
	c = h.only("P1/hardware/missing")
	if _, owed := c.Due[rma.DueBundle]; owed {
		t.Errorf("the bundle is still marked owed after it was sent: %v", c.Due)
	}
	if evs := h.events(c.ID); evs[len(evs)-1] != rma.EventBundleAdded {
		t.Errorf("case log %v; want it to end with %s", evs, rma.EventBundleAdded)
	}
}

// TestOwedBundleSurvivesARestart: the owed mark is in the store, so a
// restarted agent still sends the bundle once space returns.
func TestOwedBundleSurvivesARestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	h.clock.Set(start.Add(-7 * time.Hour)) // 11:00 in Hong Kong: the vendor's desk is open, no page
	h.diskFull.Store(true)
	h.confirm(map[string]fault{"dev-1": missingDev})
	c := h.only("D1/hardware/missing")
	h.restart()
	h.diskFull.Store(false)
	h.clock.Advance(time.Hour)
	h.e.CheckPagesNow()
	rows := h.rows(c.ID)
	equal(t, "rows", rows, []string{"vendor:case.opened", "ops:case.opened", "vendor:case.bundle", "ops:case.bundle"})
}
