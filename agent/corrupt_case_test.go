package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// TestOneCorruptCaseRowKeepsListings: one case row damaged by raw SQL in
// the real state DB. /api/v1/cases and `hsm-agent cases` still list the
// other case and name the damaged one (a response header and an ERROR log;
// a line on stderr and exit 1); `cases show` of it says what is wrong.
func TestOneCorruptCaseRowKeepsListings(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, "")
	dbPath := filepath.Join(s.dir, "state", StateDBName)
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"HA-GOOD", "HA-BAD"} {
		c := rma.Case{ID: id, DedupKey: "SN-" + id + "/hardware/missing", Serial: "SN-" + id, Device: "old-" + id,
			Fault: "missing", Kind: rma.KindHardware, Severity: 2, Tier: "premium", Flow: rma.FlowAdvanceReplacement,
			Environment: "development", Pool: "lab", Summary: id + " is missing", Occurrences: 1}
		if _, err := st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, At: time.Now(), Actor: "agent"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_ = st.Close()
	raw, err := sql.Open("sqlite", "file:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE cases SET desk_refs = '{broken' WHERE id = 'HA-BAD'`); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()

	ra := startAgent(t, s.config)
	resp, err := http.Get(ra.url + "/api/v1/cases?all=1")
	if err != nil {
		t.Fatal(err)
	}
	var listed []rma.Case
	err = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(listed) != 1 || listed[0].ID != "HA-GOOD" {
		t.Errorf("/api/v1/cases: status %d, %v, %+v; want 200 with HA-GOOD only", resp.StatusCode, err, listed)
	}
	if got := resp.Header.Get(HeaderUnreadableCases); got != "HA-BAD" {
		t.Errorf("%s header %q, want HA-BAD", HeaderUnreadableCases, got)
	}
	if logs := ra.logs.String(); !strings.Contains(logs, `"case":"HA-BAD"`) || !strings.Contains(logs, "desk_refs") {
		t.Errorf("the agent log should name HA-BAD and its bad field:\n%s", logs)
	}

	code, out, errOut := cli(CLI.Cases, "--all", "--config", s.config)
	if code != 1 || !strings.Contains(out, "HA-GOOD") || strings.Contains(out, "HA-BAD") ||
		!strings.Contains(errOut, "case HA-BAD is left out") || !strings.Contains(errOut, "desk_refs") {
		t.Errorf("cases --all: exit %d\nstdout:\n%s\nstderr:\n%s\nwant HA-GOOD listed, HA-BAD named on stderr, exit 1", code, out, errOut)
	}
	code, out, errOut = cli(CLI.Cases, "--all", "--json", "--config", s.config)
	var cases []rma.Case
	if code != 1 || json.Unmarshal([]byte(out), &cases) != nil || len(cases) != 1 || !strings.Contains(errOut, "HA-BAD") {
		t.Errorf("cases --all --json: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, _, errOut = cli(CLI.Cases, "show", "HA-BAD", "--config", s.config)
	if code != 1 || !strings.Contains(errOut, "HA-BAD") || !strings.Contains(errOut, "unreadable") || !strings.Contains(errOut, "desk_refs") {
		t.Errorf("cases show HA-BAD: exit %d %s; want what is wrong with the row", code, errOut)
	}
}
