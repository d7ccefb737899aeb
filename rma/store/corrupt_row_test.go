package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOneCorruptRowLeavesTheOthersReadable: rows damaged by raw SQL on the
// real file (a bad time, bad JSON in due and in desk_refs) are left out of
// the listing, each reported with its case ID and the bad field, while
// every other case is listed; reading the damaged case says what is wrong.
func TestOneCorruptRowLeavesTheOthersReadable(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		mustOpenCase(t, s, sampleCase(fmt.Sprintf("HA-%d", i), fmt.Sprintf("SN%d", i)), at.Add(time.Duration(i)*time.Minute), "vendor")
	}
	raw, err := sql.Open("sqlite", "file:"+s.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	damage := map[string]struct{ sql, field string }{
		"HA-1": {`UPDATE cases SET opened_at = 'yesterday-ish' WHERE id = 'HA-1'`, "opened_at"},
		"HA-2": {`UPDATE cases SET due = '{"ack": ' WHERE id = 'HA-2'`, "due"},
		"HA-3": {`UPDATE cases SET desk_refs = 'not json' WHERE id = 'HA-3'`, "desk_refs"},
	}
	for _, d := range damage {
		if _, err := raw.Exec(d.sql); err != nil {
			t.Fatal(err)
		}
	}

	for _, openOnly := range []bool{true, false} {
		cases, bad, err := s.CaseList(ctx, openOnly)
		if err != nil {
			t.Fatalf("CaseList(%v): %v; one bad row must not fail the listing", openOnly, err)
		}
		var ids []string
		for _, c := range cases {
			ids = append(ids, c.ID)
		}
		if got := strings.Join(ids, ","); got != "HA-4,HA-0" {
			t.Errorf("CaseList(%v) listed %s, want HA-4,HA-0", openOnly, got)
		}
		if len(bad) != 3 {
			t.Fatalf("CaseList(%v) reported %d unreadable rows, want 3: %+v", openOnly, len(bad), bad)
		}
		for _, b := range bad {
			d, ok := damage[b.ID]
			if !ok || !errors.Is(b.Err, ErrUnreadableRow) || !strings.Contains(b.Err.Error(), "case "+b.ID) ||
				!strings.Contains(b.Err.Error(), d.field) {
				t.Errorf("unreadable row %s: %v; want the case ID and field %q", b.ID, b.Err, d.field)
			}
		}
		if plain, err := s.Cases(ctx, openOnly); err != nil || len(plain) != 2 {
			t.Errorf("Cases(%v) = %d cases, %v; want the 2 readable ones", openOnly, len(plain), err)
		}
	}
	for id, d := range damage {
		_, err := s.Case(ctx, id)
		if !errors.Is(err, ErrUnreadableRow) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), d.field) ||
			!strings.Contains(err.Error(), "backup") {
			t.Errorf("Case(%s) = %v; want an unreadable-row error naming the case, the field %q and the fix", id, err, d.field)
		}
	}
	if _, err := s.Case(ctx, "HA-0"); err != nil {
		t.Errorf("Case(HA-0) = %v; a healthy row must read", err)
	}
}
