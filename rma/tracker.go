package rma

import (
	"fmt"
	"slices"
	"time"
)

// ChangeType is what a poll changed about one fault.
type ChangeType int

// Changes the Tracker reports.
const (
	// Confirmed: the fault was seen on confirm_polls consecutive polls, at
	// least one of them fresh. It is reported once per streak.
	Confirmed ChangeType = iota + 1
	// Cleared: a confirmed fault is no longer seen.
	Cleared
)

// Change is one confirmation or clearing.
type Change struct {
	Type  ChangeType
	Fault Fault
	// Flapping is set on a confirmation when the key confirmed more than
	// flap_limit times within flap_window: it is held on its case.
	Flapping bool
}

// TrackerPolicy holds the confirmation and flapping settings.
type TrackerPolicy struct {
	ConfirmPolls int           // consecutive failing polls that confirm a fault (at least one fresh)
	FlapLimit    int           // more confirmations than this within FlapWindow is flapping
	FlapWindow   time.Duration //
}

// Tracker confirms faults (level 1) and detects flapping. It is fed with
// every classified poll of every device and keeps per fault key the
// current streak of failing polls. It is not safe for concurrent use; time
// comes only from the observations, so it is deterministic.
type Tracker struct {
	pol     TrackerPolicy
	streaks map[string]*streak         // by dedup key
	confirm map[string][]time.Time     // by dedup key: confirmation times within the flap window
	bySer   map[string]map[string]bool // serial -> keys with a streak
}

// streak is the current run of failing polls of one fault key.
type streak struct {
	fault     Fault
	first     time.Time
	polls     int
	fresh     int
	confirmed bool
}

// NewTracker returns an empty tracker.
func NewTracker(pol TrackerPolicy) *Tracker {
	return &Tracker{pol: pol, streaks: map[string]*streak{}, confirm: map[string][]time.Time{}, bySer: map[string]map[string]bool{}}
}

// SetPolicy changes the settings (on reload); streaks in progress keep
// their counts.
func (t *Tracker) SetPolicy(pol TrackerPolicy) { t.pol = pol }

// Seed marks a fault as confirmed without a streak, as the store says it
// still is (an open case whose fault had not cleared when the agent
// stopped): polling it again then neither re-confirms it nor opens a case,
// and a healthy poll clears it.
func (t *Tracker) Seed(f Fault) {
	key := f.DedupKey()
	if _, ok := t.streaks[key]; ok {
		return
	}
	t.streaks[key] = &streak{fault: f, first: f.ObservedAt, confirmed: true}
	t.index(f.Serial, key)
}

// MarkConfirmed marks a fault as confirmed whether or not a streak is under
// way: its case was opened by other means (replacement onboarding), so the
// streak's confirmation must not append to it.
func (t *Tracker) MarkConfirmed(f Fault) {
	if s := t.streaks[f.DedupKey()]; s != nil {
		s.confirmed = true
		return
	}
	t.Seed(f)
}

func (t *Tracker) index(serial, key string) {
	if t.bySer[serial] == nil {
		t.bySer[serial] = map[string]bool{}
	}
	t.bySer[serial][key] = true
}

// Observe feeds one poll of one device and returns the confirmations and
// clearings it causes. A failing poll extends the streak of each of its
// fault keys; a key the poll could see (Observed.Sees) but did not find
// ends its streak: cleared if it was confirmed, forgotten otherwise (a
// device that recovers before confirmation gets no case).
func (t *Tracker) Observe(o Observed) []Change {
	var out []Change
	present := map[string]bool{}
	for _, f := range o.Faults {
		key := f.DedupKey()
		present[key] = true
		s := t.streaks[key]
		if s == nil {
			s = &streak{first: o.At}
			t.streaks[key] = s
			t.index(o.Serial, key)
		}
		s.polls++
		if o.Fresh {
			s.fresh++
		}
		f.ObservedAt = s.first
		if !s.confirmed {
			f.Description += fmt.Sprintf("Since: %s (first failing poll)\nLevel 1: %s\n", s.first.UTC().Format(time.RFC3339), levelOne(s.polls, s.fresh))
			if s.polls >= max(1, t.pol.ConfirmPolls) && s.fresh > 0 {
				s.confirmed = true
				f.ConfirmedAt = o.At
				out = append(out, Change{Type: Confirmed, Fault: f, Flapping: t.flapping(key, o.At)})
			}
		}
		s.fault = f
	}
	for _, key := range sortedKeys(t.bySer[o.Serial]) {
		s := t.streaks[key]
		if present[key] || !o.Sees(s.fault.Class) {
			continue
		}
		delete(t.streaks, key)
		delete(t.bySer[o.Serial], key)
		if s.confirmed {
			out = append(out, Change{Type: Cleared, Fault: s.fault})
		}
	}
	return out
}

// levelOne says what level 1 did to confirm a fault.
func levelOne(polls, fresh int) string {
	after := "none of them after a fresh C_Initialize yet"
	switch {
	case fresh == 1:
		after = "including one after a fresh C_Initialize"
	case fresh > 1:
		after = fmt.Sprintf("including %d after a fresh C_Initialize", fresh)
	}
	if polls == 1 {
		return "seen on 1 poll, " + after
	}
	return fmt.Sprintf("seen on %d consecutive polls %s", polls, after)
}

// flapping records a confirmation and reports whether the key confirmed
// more than FlapLimit times within FlapWindow.
func (t *Tracker) flapping(key string, at time.Time) bool {
	times := append(t.confirm[key], at)
	cut := 0
	for cut < len(times) && at.Sub(times[cut]) > t.pol.FlapWindow {
		cut++
	}
	times = times[cut:]
	t.confirm[key] = times
	return t.pol.FlapLimit > 0 && len(times) > t.pol.FlapLimit
}

// Pending reports whether a device has fault keys seen but not yet
// confirmed: the device is then re-probed every recheck_interval.
func (t *Tracker) Pending(serial string) bool {
	for key := range t.bySer[serial] {
		if s := t.streaks[key]; s != nil && !s.confirmed {
			return true
		}
	}
	return false
}

// Forget drops a key's streak, so that the fault confirms afresh (used
// when recording a confirmation failed).
func (t *Tracker) Forget(f Fault) {
	key := f.DedupKey()
	delete(t.streaks, key)
	delete(t.bySer[f.Serial], key)
	if c := t.confirm[key]; len(c) > 0 {
		t.confirm[key] = c[:len(c)-1]
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
