package rma

import (
	"strings"
	"testing"
	"time"
)

// poll builds one observation of device S1 at t0+sec seconds.
func poll(sec int, fresh bool, faults ...Fault) Observed {
	at := t0.Add(time.Duration(sec) * time.Second)
	o := Observed{Serial: "S1", Device: "hsm-a", Module: "soft", At: at, Fresh: fresh, TokenReported: true}
	for _, f := range faults {
		f.ObservedAt = at
		o.Faults = append(o.Faults, f)
	}
	return o
}

var (
	missing = Fault{Serial: "S1", Device: "hsm-a", Kind: KindHardware, Class: ClassMissing, Summary: "missing", Description: "Observed: gone\n"}
	lowPIN  = Fault{Serial: "S1", Device: "hsm-a", Kind: KindOperational, Class: ClassPINCountLow, Summary: "low"}
	oldFW   = Fault{Serial: "S1", Device: "hsm-a", Kind: KindFirmware, Class: ClassBelowMinimum, Summary: "old"}
)

func changes(t *testing.T, got []Change, want ...ChangeType) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes %+v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i].Type != want[i] {
			t.Fatalf("change %d is %v, want %v (%+v)", i, got[i].Type, want[i], got)
		}
	}
}

func TestTrackerConfirmation(t *testing.T) {
	t.Parallel()
	tr := NewTracker(TrackerPolicy{ConfirmPolls: 3, FlapLimit: 3, FlapWindow: time.Hour})

	// A one-poll blip gives nothing, and a recovered device is forgotten.
	changes(t, tr.Observe(poll(0, false, missing)))
	if !tr.Pending("S1") {
		t.Fatal("a device with an unconfirmed fault must be pending (rechecked)")
	}
	changes(t, tr.Observe(poll(2, false)))
	if tr.Pending("S1") {
		t.Fatal("a recovered device must not be pending")
	}

	// Three failing polls without a fresh one do not confirm; the first
	// fresh one does.
	changes(t, tr.Observe(poll(10, false, missing)))
	changes(t, tr.Observe(poll(12, false, missing)))
	changes(t, tr.Observe(poll(14, false, missing)))
	got := tr.Observe(poll(16, true, missing))
	changes(t, got, Confirmed)
	f := got[0].Fault
	if got[0].Flapping || !f.ObservedAt.Equal(t0.Add(10*time.Second)) || !f.ConfirmedAt.Equal(t0.Add(16*time.Second)) {
		t.Errorf("confirmed fault %+v", got[0])
	}
	for _, part := range []string{"Observed: gone", "Since: 2026-03-02T10:00:10Z (first failing poll)",
		"Level 1: seen on 4 consecutive polls including one after a fresh C_Initialize"} {
		if !strings.Contains(f.Description, part) {
			t.Errorf("description lacks %q:\n%s", part, f.Description)
		}
	}
	if tr.Pending("S1") {
		t.Error("a confirmed fault is not pending")
	}
	// Still failing: no new confirmation.
	changes(t, tr.Observe(poll(18, true, missing)))
	// A poll that cannot see the fault (token not reported) does not
	// clear a firmware fault, but one that reports does.
	for i := 0; i < 3; i++ {
		tr.Observe(poll(20+i, true, missing, oldFW))
	}
	noToken := poll(30, false, missing)
	noToken.TokenReported = false
	changes(t, tr.Observe(noToken))
	got = tr.Observe(poll(32, false))
	changes(t, got, Cleared, Cleared)
	if got[0].Fault.Class != ClassBelowMinimum || got[1].Fault.Class != ClassMissing {
		t.Errorf("cleared %s then %s, want below_minimum then missing (key order)", got[0].Fault.Class, got[1].Fault.Class)
	}
}

func TestTrackerConfirmPollsOne(t *testing.T) {
	t.Parallel()
	tr := NewTracker(TrackerPolicy{ConfirmPolls: 1, FlapLimit: 3, FlapWindow: time.Hour})
	changes(t, tr.Observe(poll(0, false, lowPIN)))
	changes(t, tr.Observe(poll(1, true, lowPIN)), Confirmed)
}

func TestTrackerKeysAreIndependent(t *testing.T) {
	t.Parallel()
	tr := NewTracker(TrackerPolicy{ConfirmPolls: 2, FlapLimit: 3, FlapWindow: time.Hour})
	changes(t, tr.Observe(poll(0, true, missing)))
	// The class changes: the missing streak ends, a new one starts.
	changes(t, tr.Observe(poll(1, true, lowPIN)))
	changes(t, tr.Observe(poll(2, true, lowPIN)), Confirmed)
	// Another device's poll does not touch S1's streaks.
	other := poll(3, true)
	other.Serial = "S2"
	changes(t, tr.Observe(other))
	changes(t, tr.Observe(poll(4, true)), Cleared)
}

func TestTrackerFlapping(t *testing.T) {
	t.Parallel()
	tr := NewTracker(TrackerPolicy{ConfirmPolls: 1, FlapLimit: 3, FlapWindow: time.Hour})
	sec := 0
	cycle := func() Change {
		t.Helper()
		got := tr.Observe(poll(sec, true, missing))
		changes(t, got, Confirmed)
		changes(t, tr.Observe(poll(sec+60, true)), Cleared)
		sec += 600
		return got[0]
	}
	for i := 1; i <= 3; i++ {
		if c := cycle(); c.Flapping {
			t.Fatalf("confirmation %d within the window is not flapping yet (flap_limit 3)", i)
		}
	}
	if c := cycle(); !c.Flapping {
		t.Fatal("the 4th confirmation within flap_window must be flapping")
	}
	// After a quiet window it is no longer flapping.
	sec += int((2 * time.Hour).Seconds())
	if c := cycle(); c.Flapping {
		t.Fatal("a confirmation after a quiet flap_window is not flapping")
	}
}

func TestTrackerSeedAndForget(t *testing.T) {
	t.Parallel()
	tr := NewTracker(TrackerPolicy{ConfirmPolls: 2, FlapLimit: 3, FlapWindow: time.Hour})
	tr.Seed(missing)
	// Still failing after a restart: no new confirmation.
	changes(t, tr.Observe(poll(0, true, missing)))
	changes(t, tr.Observe(poll(1, true, missing)))
	// Healthy: the seeded fault clears.
	changes(t, tr.Observe(poll(2, true)), Cleared)

	// Forget lets a fault confirm again (after a failed write).
	tr.Observe(poll(3, true, missing))
	changes(t, tr.Observe(poll(4, true, missing)), Confirmed)
	tr.Forget(missing)
	changes(t, tr.Observe(poll(5, true, missing)))
	changes(t, tr.Observe(poll(6, true, missing)), Confirmed)
}
