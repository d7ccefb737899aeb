package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

var t0 = time.Date(2026, 3, 2, 10, 4, 5, 123456789, time.UTC)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func sampleCase(id, serial string) rma.Case {
	return rma.Case{
		ID: id, DedupKey: rma.DedupKey(serial, rma.KindHardware, "missing"),
		Serial: serial, Device: "hsm-" + serial, Fault: "missing", Kind: rma.KindHardware,
		Severity: 1, Tier: "premium-plus", Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen,
		Environment: "production", Pool: "signing", Summary: "HSM " + serial + " missing",
		Description: "not in the slot list on 3 polls", Impact: "pool signing: 0 of 2 healthy",
		Occurrences: 1,
	}
}

func openedEvent(at time.Time) rma.Event {
	return rma.Event{Type: rma.EventOpened, At: at, Actor: "agent", Data: json.RawMessage(`{"polls":3}`)}
}

func rows(desks ...string) []rma.Delivery {
	var out []rma.Delivery
	for _, d := range desks {
		out = append(out, rma.Delivery{Desk: d, Payload: json.RawMessage(`{"event":"x","desk":"` + d + `"}`)})
	}
	return out
}

func mustOpenCase(t testing.TB, s *Store, c rma.Case, at time.Time, desks ...string) rma.Case {
	t.Helper()
	got, err := s.OpenCase(context.Background(), c, openedEvent(at), rows(desks...))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func pragma(t testing.TB, s *Store, name string) string {
	t.Helper()
	var v string
	if err := s.db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenCreatesDirAndSettings(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	want := map[string]string{
		"journal_mode":   "wal",
		"synchronous":    "1", // NORMAL
		"foreign_keys":   "1",
		"busy_timeout":   "10000",
		"user_version":   fmt.Sprint(len(migrations)),
		"application_id": fmt.Sprint(applicationID),
	}
	for name, v := range want {
		if got := pragma(t, s, name); got != v {
			t.Errorf("PRAGMA %s = %q, want %q", name, got, v)
		}
	}
	if !filepath.IsAbs(s.Path()) || filepath.Base(s.Path()) != "state.db" {
		t.Errorf("Path() = %q", s.Path())
	}
}

func TestOpenCaseRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	c := sampleCase("C1", "S1")
	c.Due = map[string]time.Time{"vendor_response": t0.Add(4 * time.Hour).In(time.FixedZone("X", 3600))}
	c.DeskRefs = map[string]string{"old": "T-0"}
	c.Held, c.BundleApproved, c.Reason, c.RMANumber = true, true, "why", "RMA-1"
	got, err := s.OpenCase(ctx, c, openedEvent(t0), rows("vendor", "internal"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 1 || !got.OpenedAt.Equal(t0) || !got.UpdatedAt.Equal(t0) || got.State != rma.StateOpen {
		t.Errorf("returned case: seq %d opened %v updated %v state %s", got.Seq, got.OpenedAt, got.UpdatedAt, got.State)
	}
	back, err := s.Case(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	want := got
	want.Due = map[string]time.Time{"vendor_response": t0.Add(4 * time.Hour)}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("Case read back:\n got %+v\nwant %+v", back, want)
	}
	if back.OpenedAt.Nanosecond() != 123456789 || back.OpenedAt.Location() != time.UTC {
		t.Errorf("time precision/zone lost: %v", back.OpenedAt)
	}

	evs, err := s.Events(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	wantEv := rma.Event{CaseID: "C1", Seq: 1, Type: rma.EventOpened, At: t0, Actor: "agent", Data: json.RawMessage(`{"polls":3}`)}
	if len(evs) != 1 || !reflect.DeepEqual(evs[0], wantEv) {
		t.Errorf("events = %+v, want [%+v]", evs, wantEv)
	}

	ds, err := s.Deliveries(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("deliveries = %+v", ds)
	}
	for i, desk := range []string{"vendor", "internal"} {
		d := ds[i]
		if d.ID == 0 || d.CaseID != "C1" || d.Seq != 1 || d.Desk != desk || d.IdempotencyKey != "C1:1" ||
			d.State != rma.DeliveryPending || d.Attempts != 0 || !d.CreatedAt.Equal(t0) || !d.NextAttempt.Equal(t0) ||
			!d.DeliveredAt.IsZero() || string(d.Payload) != `{"event":"x","desk":"`+desk+`"}` {
			t.Errorf("delivery %d = %+v", i, d)
		}
	}
}

func TestOpenCaseDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	c := sampleCase("C1", "S1")
	c.State = ""
	before := time.Now()
	got, err := s.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, Actor: "agent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != rma.StateOpen || got.OpenedAt.Before(before) || !got.OpenedAt.Equal(got.UpdatedAt) {
		t.Errorf("defaults: %+v", got)
	}
	bad := []struct {
		name string
		c    rma.Case
		ev   rma.Event
		out  []rma.Delivery
		want string
	}{
		{"no id", sampleCase("", "S2"), openedEvent(t0), nil, "needs an ID"},
		{"no type", sampleCase("C2", "S2"), rma.Event{Actor: "agent"}, nil, "has no type"},
		{"no actor", sampleCase("C2", "S2"), rma.Event{Type: rma.EventOpened}, nil, "has no actor"},
		{"bad data", sampleCase("C2", "S2"), rma.Event{Type: rma.EventOpened, Actor: "agent", Data: json.RawMessage("{")}, nil, "not valid JSON"},
		{"no desk", sampleCase("C2", "S2"), openedEvent(t0), []rma.Delivery{{Payload: json.RawMessage(`{}`)}}, "has no desk"},
		{"bad payload", sampleCase("C2", "S2"), openedEvent(t0), []rma.Delivery{{Desk: "d", Payload: json.RawMessage(`{`)}}, "not valid JSON"},
		{"same desk twice", sampleCase("C2", "S2"), openedEvent(t0), rows("d", "d"), "already queued for desk d"},
		{"same id", sampleCase("C1", "S2"), openedEvent(t0), nil, "case with ID C1 already exists"},
	}
	for _, b := range bad {
		_, err := s.OpenCase(ctx, b.c, b.ev, b.out)
		if err == nil || !strings.Contains(err.Error(), b.want) || errors.Is(err, ErrDuplicate) {
			t.Errorf("%s: err = %v, want one containing %q (and not ErrDuplicate)", b.name, err, b.want)
		}
	}
	// Nothing of the refused cases was written.
	all, err := s.Cases(ctx, false)
	if err != nil || len(all) != 1 {
		t.Errorf("cases after refusals = %d (%v), want 1", len(all), err)
	}
	if ds, _ := s.Deliveries(ctx, "C2"); len(ds) != 0 {
		t.Errorf("deliveries of refused case: %+v", ds)
	}
}

func TestOpenCaseDuplicate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0, "vendor")
	_, err := s.OpenCase(ctx, sampleCase("C2", "S1"), openedEvent(t0.Add(time.Minute)), rows("vendor"))
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), "case C1") {
		t.Fatalf("second open case with one key: err = %v, want ErrDuplicate naming C1", err)
	}
	if _, err := s.Case(ctx, "C2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("C2 after ErrDuplicate: %v", err)
	}
	if evs, _ := s.Events(ctx, "C2"); len(evs) != 0 {
		t.Errorf("C2 has events: %+v", evs)
	}
	if ds, _ := s.Deliveries(ctx, "C2"); len(ds) != 0 {
		t.Errorf("C2 has deliveries: %+v", ds)
	}
	// After close the key is free again; reopening the closed case then
	// collides with the new one.
	closeCase(t, s, "C1", t0.Add(time.Hour))
	mustOpenCase(t, s, sampleCase("C2", "S1"), t0.Add(2*time.Hour), "vendor")
	_, err = s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.State = rma.StateOpen
		return rma.Event{Type: rma.EventReopened, Actor: "agent", At: t0.Add(3 * time.Hour)}, rows("vendor"), nil
	})
	if !errors.Is(err, ErrDuplicate) {
		t.Fatalf("reopening C1 while C2 is open: err = %v, want ErrDuplicate", err)
	}
	c1, _ := s.Case(ctx, "C1")
	if c1.State != rma.StateClosed || c1.Seq != 2 {
		t.Errorf("C1 after refused reopen: %s seq %d", c1.State, c1.Seq)
	}
}

// The unique partial index, not just the Go pre-check, keeps one open case
// per key: a raw insert is refused too.
func TestDedupIndexInSchema(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0)
	args, err := caseArgs(sampleCase("C2", "S1"))
	if err != nil {
		t.Fatal(err)
	}
	args[14], args[15] = fmtTime(t0), fmtTime(t0)
	args[24] = 1
	_, err = s.db.Exec(`INSERT INTO cases (`+caseCols+`) VALUES (?`+strings.Repeat(",?", len(args)-1)+`)`, args...)
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("raw insert of a second open case: err = %v, want a UNIQUE constraint error", err)
	}
	args[9] = string(rma.StateClosed) // a closed case with the key is fine
	if _, err := s.db.Exec(`INSERT INTO cases (`+caseCols+`) VALUES (?`+strings.Repeat(",?", len(args)-1)+`)`, args...); err != nil {
		t.Fatalf("raw insert of a closed case with the key: %v", err)
	}
}

func closeCase(t testing.TB, s *Store, id string, at time.Time) rma.Case {
	t.Helper()
	c, err := s.Transition(context.Background(), id, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.State, c.ClosedAt = rma.StateClosed, at
		return rma.Event{Type: rma.EventClosed, Actor: "operator:alice", At: at, Note: "replaced"}, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTransitionSequence(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0, "vendor", "pager")
	for i := 2; i <= 4; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		got, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
			if c.Seq != i-1 {
				t.Errorf("fn sees seq %d, want %d", c.Seq, i-1)
			}
			c.Occurrences++
			c.Severity = 2
			return rma.Event{Type: rma.EventUpdated, Actor: "agent", At: at, Seq: 99, CaseID: "wrong"}, rows("vendor"), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != i || !got.UpdatedAt.Equal(at) || got.Occurrences != i || got.Severity != 2 || !got.OpenedAt.Equal(t0) {
			t.Errorf("after transition %d: %+v", i, got)
		}
		back, _ := s.Case(ctx, "C1")
		if !reflect.DeepEqual(back, got) {
			t.Errorf("stored case differs from returned:\n%+v\n%+v", back, got)
		}
	}
	evs, _ := s.Events(ctx, "C1")
	var seqs []int
	for _, e := range evs {
		if e.CaseID != "C1" {
			t.Errorf("event case id %q", e.CaseID)
		}
		seqs = append(seqs, e.Seq)
	}
	if !reflect.DeepEqual(seqs, []int{1, 2, 3, 4}) {
		t.Errorf("event seqs %v", seqs)
	}
	ds, _ := s.Deliveries(ctx, "C1")
	var keys []string
	for _, d := range ds {
		keys = append(keys, d.Desk+"="+d.IdempotencyKey)
		if d.IdempotencyKey != rma.IdempotencyKey(d.CaseID, d.Seq) {
			t.Errorf("key %s for seq %d", d.IdempotencyKey, d.Seq)
		}
	}
	want := []string{"vendor=C1:1", "pager=C1:1", "vendor=C1:2", "vendor=C1:3", "vendor=C1:4"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("outbox keys %v, want %v", keys, want)
	}
	// A raw second event with an existing seq is refused by the schema.
	if _, err := s.db.Exec(`INSERT INTO case_events (case_id, seq, type, at, actor, note) VALUES ('C1', 2, 'x', ?, 'agent', '')`, fmtTime(t0)); err == nil {
		t.Error("second event with seq 2 accepted")
	}
	if _, err := s.db.Exec(`INSERT INTO outbox (case_id, seq, desk, idempotency_key, payload, bundle_path, withhold_bundle, state, attempts, next_attempt, last_error, ticket_id, created_at)
		VALUES ('C1', 2, 'vendor', 'C1:2', '{}', '', 0, 'pending', 0, ?, '', '', ?)`, fmtTime(t0), fmtTime(t0)); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Errorf("re-enqueueing C1:2 for vendor: err = %v, want UNIQUE", err)
	}
}

func TestTransitionNoChangeAndErrors(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	c := sampleCase("C1", "S1")
	c.DeskRefs = map[string]string{"vendor": "T-1"}
	orig := mustOpenCase(t, s, c, t0, "vendor")
	stored, _ := s.Case(ctx, "C1")

	got, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.Severity, c.State = 4, rma.StateClosed
		c.DeskRefs["vendor"] = "changed"
		return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, rows("vendor"), ErrNoChange
	})
	if !errors.Is(err, ErrNoChange) {
		t.Fatalf("err = %v, want ErrNoChange", err)
	}
	if !reflect.DeepEqual(got, stored) || got.Seq != orig.Seq {
		t.Errorf("ErrNoChange returned %+v, want the unchanged %+v", got, stored)
	}

	boom := errors.New("boom")
	got, err = s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.Severity = 4
		return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, rows("vendor"), boom
	})
	if !errors.Is(err, boom) || got.ID != "" {
		t.Errorf("fn error: got %+v, %v", got, err)
	}
	// A failure while writing (here: the outbox row repeats a desk) rolls
	// back the case update and the event too.
	_, err = s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.Severity = 4
		return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, rows("vendor", "vendor"), nil
	})
	if err == nil {
		t.Error("duplicate desk rows accepted")
	}

	after, _ := s.Case(ctx, "C1")
	if !reflect.DeepEqual(after, stored) {
		t.Errorf("case changed by refused transitions:\n%+v\n%+v", after, stored)
	}
	if evs, _ := s.Events(ctx, "C1"); len(evs) != 1 {
		t.Errorf("events after refused transitions: %+v", evs)
	}
	if ds, _ := s.Deliveries(ctx, "C1"); len(ds) != 1 {
		t.Errorf("deliveries after refused transitions: %+v", ds)
	}
	if _, err := s.Transition(ctx, "nope", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		t.Error("fn called for a missing case")
		return rma.Event{}, nil, nil
	}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing case: %v", err)
	}
	if _, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.ID = "other"
		return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, nil, nil
	}); err == nil {
		t.Error("fn changing the ID accepted")
	}
}

func TestCaseQueries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Case(ctx, "nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Case(nope) = %v", err)
	}
	if _, ok, err := s.CaseByKey(ctx, "S1/hardware/missing"); ok || err != nil {
		t.Errorf("CaseByKey on empty store: %v %v", ok, err)
	}
	mustOpenCase(t, s, sampleCase("A", "S1"), t0)
	closeCase(t, s, "A", t0.Add(time.Hour))
	mustOpenCase(t, s, sampleCase("B", "S1"), t0.Add(2*time.Hour))
	closeCase(t, s, "B", t0.Add(3*time.Hour))
	mustOpenCase(t, s, sampleCase("C", "S2"), t0.Add(4*time.Hour))
	mustOpenCase(t, s, sampleCase("D", "S3"), t0.Add(-time.Hour))

	c, ok, err := s.CaseByKey(ctx, "S1/hardware/missing")
	if err != nil || !ok || c.ID != "B" || c.State != rma.StateClosed {
		t.Errorf("CaseByKey = %s %s %v %v, want B closed", c.ID, c.State, ok, err)
	}
	ids := func(cs []rma.Case) (out []string) {
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	all, err := s.Cases(ctx, false)
	if err != nil || !reflect.DeepEqual(ids(all), []string{"C", "B", "A", "D"}) {
		t.Errorf("Cases(all) = %v %v", ids(all), err)
	}
	open, err := s.Cases(ctx, true)
	if err != nil || !reflect.DeepEqual(ids(open), []string{"C", "D"}) {
		t.Errorf("Cases(open) = %v %v", ids(open), err)
	}
	empty, err := s.Events(ctx, "nope")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("Events(nope) = %#v %v, want an empty slice", empty, err)
	}
}

func TestLogEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0)
	note := rma.Event{CaseID: "C1", Type: rma.EventNote, At: t0.Add(time.Minute), Actor: "operator:bob", Note: "called vendor"}
	if err := s.LogEvent(ctx, note); err != nil {
		t.Fatal(err)
	}
	closeCase(t, s, "C1", t0.Add(2*time.Minute))
	if err := s.LogEvent(ctx, rma.Event{CaseID: "C1", Type: rma.EventNote, Actor: "agent", At: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	evs, _ := s.Events(ctx, "C1")
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s:%s", e.Seq, e.Type, e.Actor))
	}
	want := []string{"1:case.opened:agent", "0:note:operator:bob", "2:case.closed:operator:alice", "0:note:agent"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if !reflect.DeepEqual(evs[1], note) {
		t.Errorf("note read back %+v", evs[1])
	}
	c, _ := s.Case(ctx, "C1")
	if c.Seq != 2 {
		t.Errorf("LogEvent changed the case seq: %d", c.Seq)
	}
	if err := s.LogEvent(ctx, rma.Event{CaseID: "nope", Type: rma.EventNote, Actor: "agent"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("LogEvent on unknown case: %v", err)
	}
	if err := s.LogEvent(ctx, rma.Event{CaseID: "C1", Seq: 3, Type: rma.EventNote, Actor: "agent"}); err == nil || !strings.Contains(err.Error(), "Seq 0") {
		t.Errorf("LogEvent with seq: %v", err)
	}
}

func TestEventsAppendOnly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0)
	for _, q := range []string{`UPDATE case_events SET note = 'x'`, `DELETE FROM case_events`} {
		if _, err := s.db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only", q, err)
		}
	}
	if evs, _ := s.Events(context.Background(), "C1"); len(evs) != 1 || evs[0].Note != "" {
		t.Errorf("events after refused update/delete: %+v", evs)
	}
	// Foreign keys are on: an event needs its case.
	if _, err := s.db.Exec(`INSERT INTO case_events (case_id, seq, type, at, actor, note) VALUES ('nope', 0, 'note', ?, 'agent', '')`, fmtTime(t0)); err == nil {
		t.Error("event for a missing case accepted")
	}
}

func deliveryEvents(t testing.TB, s *Store, caseID string) []deliveryData {
	t.Helper()
	evs, err := s.Events(context.Background(), caseID)
	if err != nil {
		t.Fatal(err)
	}
	var out []deliveryData
	for _, e := range evs {
		if e.Type != rma.EventDelivery {
			continue
		}
		if e.Seq != 0 || !strings.HasPrefix(e.Actor, "desk:") || e.Note == "" {
			t.Errorf("delivery event %+v", e)
		}
		var d deliveryData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if e.Actor != "desk:"+d.Desk {
			t.Errorf("actor %s for desk %s", e.Actor, d.Desk)
		}
		out = append(out, d)
	}
	return out
}

func TestRecordAttempt(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0, "vendor", "internal", "pager")
	ds, _ := s.Deliveries(ctx, "C1")
	vendor, internal, pager := ds[0], ds[1], ds[2]

	// vendor: 503, retry later; then 201 with a ticket.
	retryAt := t0.Add(30 * time.Second)
	if err := s.RecordAttempt(ctx, vendor.ID, Attempt{At: t0.Add(time.Second), Status: 503, Err: "HTTP 503", NextAttempt: retryAt}); err != nil {
		t.Fatal(err)
	}
	d := delivery(t, s, "C1", vendor.ID)
	if d.State != rma.DeliveryPending || d.Attempts != 1 || !d.NextAttempt.Equal(retryAt) || d.LastError != "HTTP 503" {
		t.Errorf("after retry: %+v", d)
	}
	due, _ := s.DueDeliveries(ctx, "vendor", retryAt.Add(-time.Nanosecond), 10)
	if len(due) != 0 {
		t.Errorf("due before NextAttempt: %+v", due)
	}
	due, _ = s.DueDeliveries(ctx, "vendor", retryAt, 10)
	if len(due) != 1 || due[0].ID != vendor.ID {
		t.Errorf("due at NextAttempt: %+v", due)
	}
	if err := s.RecordAttempt(ctx, vendor.ID, Attempt{At: retryAt.Add(time.Second), Delivered: true, Status: 201, TicketID: "VND-7"}); err != nil {
		t.Fatal(err)
	}
	d = delivery(t, s, "C1", vendor.ID)
	if d.State != rma.DeliveryDelivered || d.Attempts != 2 || d.TicketID != "VND-7" || !d.DeliveredAt.Equal(retryAt.Add(time.Second)) || d.LastError != "" {
		t.Errorf("after delivery: %+v", d)
	}
	c, _ := s.Case(ctx, "C1")
	if c.DeskRefs["vendor"] != "VND-7" || c.Seq != 1 || !c.UpdatedAt.Equal(t0) {
		t.Errorf("case after delivery: refs %v seq %d updated %v", c.DeskRefs, c.Seq, c.UpdatedAt)
	}

	// internal: delivered without a ticket: no desk ref.
	if err := s.RecordAttempt(ctx, internal.ID, Attempt{At: t0.Add(2 * time.Second), Delivered: true, Status: 204}); err != nil {
		t.Fatal(err)
	}
	// pager: 400, parked.
	if err := s.RecordAttempt(ctx, pager.ID, Attempt{At: t0.Add(3 * time.Second), Parked: true, Status: 400, Err: "bad request"}); err != nil {
		t.Fatal(err)
	}
	d = delivery(t, s, "C1", pager.ID)
	if d.State != rma.DeliveryParked || d.Attempts != 1 || d.LastError != "bad request" || !d.DeliveredAt.IsZero() {
		t.Errorf("after park: %+v", d)
	}
	c, _ = s.Case(ctx, "C1")
	if !reflect.DeepEqual(c.DeskRefs, map[string]string{"vendor": "VND-7"}) {
		t.Errorf("desk refs %v", c.DeskRefs)
	}

	got := deliveryEvents(t, s, "C1")
	want := []deliveryData{
		{DeliveryID: vendor.ID, Desk: "vendor", Sequence: 1, IdempotencyKey: "C1:1", Attempt: 1, Outcome: "retry", Status: 503, Error: "HTTP 503", NextAttempt: retryAt},
		{DeliveryID: vendor.ID, Desk: "vendor", Sequence: 1, IdempotencyKey: "C1:1", Attempt: 2, Outcome: "delivered", Status: 201, TicketID: "VND-7"},
		{DeliveryID: internal.ID, Desk: "internal", Sequence: 1, IdempotencyKey: "C1:1", Attempt: 1, Outcome: "delivered", Status: 204},
		{DeliveryID: pager.ID, Desk: "pager", Sequence: 1, IdempotencyKey: "C1:1", Attempt: 1, Outcome: "parked", Status: 400, Error: "bad request"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delivery log:\n got %+v\nwant %+v", got, want)
	}

	// Rows that are no longer pending are not touched again.
	for _, id := range []int64{vendor.ID, pager.ID} {
		if err := s.RecordAttempt(ctx, id, Attempt{Delivered: true, TicketID: "X"}); !errors.Is(err, ErrNoChange) {
			t.Errorf("attempt on finished row %d: %v, want ErrNoChange", id, err)
		}
	}
	if n := len(deliveryEvents(t, s, "C1")); n != 4 {
		t.Errorf("delivery events after refused attempts: %d", n)
	}
	if err := s.RecordAttempt(ctx, 999, Attempt{Delivered: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown row: %v", err)
	}
	if err := s.RecordAttempt(ctx, vendor.ID, Attempt{Delivered: true, Parked: true}); err == nil || errors.Is(err, ErrNoChange) {
		t.Errorf("delivered and parked: %v", err)
	}
}

func delivery(t testing.TB, s *Store, caseID string, id int64) rma.Delivery {
	t.Helper()
	ds, err := s.Deliveries(context.Background(), caseID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("no delivery %d in case %s", id, caseID)
	return rma.Delivery{}
}

func TestDueDeliveries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	// Queued in this order: A:1 (vendor, internal), B:1 (vendor), A:2 (vendor).
	mustOpenCase(t, s, sampleCase("A", "S1"), t0.Add(time.Hour), "vendor", "internal")
	mustOpenCase(t, s, sampleCase("B", "S2"), t0, "vendor")
	if _, err := s.Transition(ctx, "A", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		return rma.Event{Type: rma.EventUpdated, Actor: "agent", At: t0.Add(2 * time.Hour)}, rows("vendor"), nil
	}); err != nil {
		t.Fatal(err)
	}
	keys := func(ds []rma.Delivery) (out []string) {
		for _, d := range ds {
			out = append(out, d.IdempotencyKey)
		}
		return out
	}
	later := t0.Add(24 * time.Hour)
	for _, tc := range []struct {
		desk  string
		now   time.Time
		limit int
		want  []string
	}{
		{"vendor", later, 0, []string{"A:1", "B:1", "A:2"}},
		{"vendor", later, 2, []string{"A:1", "B:1"}},
		{"vendor", t0.Add(time.Hour), 0, []string{"A:1", "B:1"}}, // A:2 is due at +2h
		{"vendor", t0, 0, []string{"B:1"}},
		{"vendor", t0.Add(-time.Nanosecond), 0, nil},
		{"internal", later, 0, []string{"A:1"}},
		{"nope", later, 0, nil},
	} {
		got, err := s.DueDeliveries(ctx, tc.desk, tc.now, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(keys(got), tc.want) {
			t.Errorf("DueDeliveries(%s, %v, %d) = %v, want %v", tc.desk, tc.now, tc.limit, keys(got), tc.want)
		}
	}
	// Delivered and parked rows are never due; a retry moves a row back.
	due, _ := s.DueDeliveries(ctx, "vendor", later, 0)
	s.RecordAttempt(ctx, due[0].ID, Attempt{At: later, Delivered: true})
	s.RecordAttempt(ctx, due[1].ID, Attempt{At: later, Parked: true})
	s.RecordAttempt(ctx, due[2].ID, Attempt{At: later, NextAttempt: later.Add(time.Minute)})
	if got, _ := s.DueDeliveries(ctx, "vendor", later.Add(time.Minute-1), 0); len(got) != 0 {
		t.Errorf("due after attempts: %v", keys(got))
	}
	if got, _ := s.DueDeliveries(ctx, "vendor", later.Add(time.Minute), 0); !reflect.DeepEqual(keys(got), []string{"A:2"}) {
		t.Errorf("due after backoff: %v", keys(got))
	}
}

func TestReleaseBundlesAndCounts(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	withheld := func(desks ...string) []rma.Delivery {
		out := rows(desks...)
		for i := range out {
			out[i].BundlePath = "/var/lib/hsm-agent/bundles/b.tar.gz"
			out[i].WithholdBundle = out[i].Desk == "vendor"
		}
		return out
	}
	if _, err := s.OpenCase(ctx, sampleCase("C1", "S1"), openedEvent(t0), withheld("vendor", "internal")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(ctx, "C1", func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		return rma.Event{Type: rma.EventUpdated, Actor: "agent", At: t0.Add(time.Minute)}, withheld("vendor"), nil
	}); err != nil {
		t.Fatal(err)
	}
	mustOpenCase(t, s, sampleCase("C2", "S2"), t0, "vendor", "pager")
	ds, _ := s.Deliveries(ctx, "C1")
	// The first vendor row went out without the bundle.
	if err := s.RecordAttempt(ctx, ds[0].ID, Attempt{At: t0, Delivered: true}); err != nil {
		t.Fatal(err)
	}
	c2, _ := s.Deliveries(ctx, "C2")
	if err := s.RecordAttempt(ctx, c2[1].ID, Attempt{At: t0, Parked: true, Status: 401}); err != nil {
		t.Fatal(err)
	}

	counts, err := s.OutboxCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := map[string]OutboxCount{"vendor": {Pending: 2}, "internal": {Pending: 1}, "pager": {Parked: 1}}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Errorf("OutboxCounts = %v, want %v", counts, wantCounts)
	}

	if err := s.ReleaseBundles(ctx, "C1"); err != nil {
		t.Fatal(err)
	}
	ds, _ = s.Deliveries(ctx, "C1")
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s:%d:%s:%v", d.Desk, d.Seq, d.State, d.WithholdBundle))
	}
	want := []string{"vendor:1:delivered:true", "internal:1:pending:false", "vendor:2:pending:false"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after ReleaseBundles: %v, want %v", got, want)
	}
	if err := s.ReleaseBundles(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReleaseBundles(nope) = %v", err)
	}
}

func TestSerialHistory(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	steps := []struct {
		serial  string
		at      time.Time
		changed bool
	}{
		{"A", t0, false}, // first sighting is not a change
		{"A", t0.Add(time.Minute), false},
		{"A", t0.Add(30 * time.Second), false}, // late report: last_seen stays
		{"B", t0.Add(2 * time.Minute), true},   // replaced
		{"B", t0.Add(3 * time.Minute), false},
		{"A", t0.Add(4 * time.Minute), true}, // swapped back
	}
	for i, st := range steps {
		changed, err := s.RecordSerial(ctx, "hsm1", st.serial, st.at)
		if err != nil {
			t.Fatal(err)
		}
		if changed != st.changed {
			t.Errorf("step %d (%s): changed = %v, want %v", i, st.serial, changed, st.changed)
		}
	}
	if _, err := s.RecordSerial(ctx, "hsm2", "Z", t0); err != nil {
		t.Fatal(err)
	}
	h, err := s.SerialHistory(ctx, "hsm1")
	if err != nil {
		t.Fatal(err)
	}
	want := []SerialRecord{
		{"hsm1", "A", t0, t0.Add(time.Minute), nil},
		{"hsm1", "B", t0.Add(2 * time.Minute), t0.Add(3 * time.Minute), nil},
		{"hsm1", "A", t0.Add(4 * time.Minute), t0.Add(4 * time.Minute), nil},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("history:\n got %+v\nwant %+v", h, want)
	}
	if h, _ := s.SerialHistory(ctx, "none"); len(h) != 0 {
		t.Errorf("history of unknown device: %+v", h)
	}
	if _, err := s.RecordSerial(ctx, "", "A", t0); err == nil {
		t.Error("empty device accepted")
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0, "vendor")
	schema := func(s *Store) (n int) {
		s.db.QueryRow(`SELECT count(*) FROM sqlite_schema`).Scan(&n)
		return n
	}
	objects := schema(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		s, err = Open(path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if got := pragma(t, s, "user_version"); got != fmt.Sprint(len(migrations)) {
			t.Errorf("user_version after reopen %s", got)
		}
		if schema(s) != objects {
			t.Errorf("schema objects %d after reopen, want %d", schema(s), objects)
		}
		if c, err := s.Case(context.Background(), "C1"); err != nil || c.Seq != 1 {
			t.Errorf("case after reopen: %+v %v", c, err)
		}
		s.Close()
	}
}

func TestMigrationsEachInOwnTransaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	bad := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")},
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);")},
	}
	migs, err := loadMigrations(bad, "m")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(context.Background(), path, migs); err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("failing migration: err = %v, want one naming 0002_b.sql", err)
	}
	good := fstest.MapFS{
		"m/0001_a.sql": bad["m/0001_a.sql"],
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER);")},
	}
	migs, _ = loadMigrations(good, "m")
	s, err := open(context.Background(), path, migs[:1])
	if err != nil {
		t.Fatal(err)
	}
	// Step 1 committed, step 2 (table b) rolled back entirely.
	var n int
	s.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'b'`).Scan(&n)
	if v := pragma(t, s, "user_version"); v != "1" || n != 0 {
		t.Errorf("after failed step 2: user_version %s, table b present %d", v, n)
	}
	s.Close()
	s, err = open(context.Background(), path, migs)
	if err != nil {
		t.Fatal(err)
	}
	if v := pragma(t, s, "user_version"); v != "2" {
		t.Errorf("user_version %s, want 2", v)
	}
	s.Close()
	// This database is now newer than a binary that knows one migration.
	if _, err := open(context.Background(), path, migs[:1]); !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), "newer hsm-agent") {
		t.Errorf("older binary: %v", err)
	}
}

func TestLoadMigrationsRejectsBadNumbering(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fstest.MapFS{
		"gap":    {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"repeat": {"m/0001_a.sql": {}, "m/0001_b.sql": {}},
		"name":   {"m/first.sql": {}},
		"zero":   {"m/0000_a.sql": {}},
	} {
		if _, err := loadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if len(migrations) == 0 || migrations[0].name != "0001_init.sql" {
		t.Errorf("embedded migrations: %+v", migrations)
	}
}

// The engine and the operator actions use the store through rma.Store.
var _ rma.Store = (*Store)(nil)
