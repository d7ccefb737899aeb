package agent

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// reportSite is a site with one device per tier (EMEA contracts C-PP,
// C-P, C-S) and a state database holding, written through the store API:
//
//	A  premium-plus, opened Fri 2026-03-20 15:00Z, confirmed Sat 10:00
//	   (initial response missed by 15 h of wall time), shipped Mon 13:00, closed
//	B  premium, opened the same Friday, confirmed Mon 10:00 (met: 3h30m of
//	   business time), shipped Tue 12:00, closed
//	C  standard, opened Wed 2026-04-01 10:00Z (11:00 BST), never answered,
//	   cancelled Thu 10:00Z: 8h30m of business time, due after 8 h
//	D  premium, opened an hour ago, open: its targets are pending
func reportSite(t *testing.T) *e2eSite {
	t.Helper()
	s := newE2ESite(t, 3)
	var devices strings.Builder
	for i, tier := range []string{"premium-plus", "premium", "standard"} {
		devices.WriteString(s.device(i, "hsm-"+tier, fmt.Sprintf("environment: production, contract: {id: C-%s, tier: %s, expires: 2099-01-31, region: emea}",
			strings.ToUpper(strings.NewReplacer("premium", "p", "standard", "s", "-plus", "p").Replace(tier)), tier)))
	}
	s.write(t, siteConfig{
		Devices: devices.String(),
		Desks:   fmt.Sprintf("  - {name: ops, type: spool, role: internal, dir: %q}\n", filepath.Join(s.dir, "spool")),
	}, testTimings)
	st, err := store.Open(filepath.Join(s.dir, "state", StateDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hour := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	writeReportCase(t, st, "A", s.serial(0), "hsm-premium-plus", "premium-plus", "2026-03-20T15:00:00Z",
		"confirmed=2026-03-21T10:00:00Z", "authorized=2026-03-21T11:00:00Z", "replacement_shipped=2026-03-23T13:00:00Z",
		"replacement_installed=2026-03-24T09:00:00Z", "faulty_returned=2026-03-30T09:00:00Z", "closed=2026-03-30T10:00:00Z")
	writeReportCase(t, st, "B", s.serial(1), "hsm-premium", "premium", "2026-03-20T15:00:00Z",
		"confirmed=2026-03-23T10:00:00Z", "authorized=2026-03-23T11:00:00Z", "replacement_shipped=2026-03-24T12:00:00Z", "closed=2026-03-24T13:00:00Z")
	writeReportCase(t, st, "C", s.serial(2), "hsm-standard", "standard", "2026-04-01T10:00:00Z", "cancelled=2026-04-02T10:00:00Z")
	writeReportCase(t, st, "D", s.serial(1), "hsm-premium", "premium", hour)
	return s
}

// writeReportCase opens a severity-2 hardware case and moves it through
// its states (state=RFC3339) with the store's Transition.
func writeReportCase(t *testing.T, st *store.Store, id, serial, device, tier, opened string, steps ...string) {
	t.Helper()
	ctx := context.Background()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	c := rma.Case{ID: id, DedupKey: rma.DedupKey(serial, rma.KindHardware, "failed"+id), Serial: serial, Device: device,
		Fault: "failed", Kind: rma.KindHardware, Severity: 2, Tier: tier, Flow: rma.FlowFor(tier), Environment: "production",
		Summary: device + " failed", Occurrences: 1}
	if _, err := st.OpenCase(ctx, c, rma.Event{Type: rma.EventOpened, At: at(opened), Actor: rma.ActorAgent}, nil); err != nil {
		t.Fatal(err)
	}
	for _, step := range steps {
		state, when, _ := strings.Cut(step, "=")
		_, err := st.Transition(ctx, id, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
			c.State = rma.State(state)
			if c.State.Terminal() {
				c.ClosedAt = at(when)
			}
			return rma.Event{Type: rma.StateEvent(c.State), At: at(when), Actor: "operator:alice"}, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// reportJSON runs `report sla --json` with args and decodes the rows.
func reportJSON(t *testing.T, s *e2eSite, args ...string) []rma.SLARow {
	t.Helper()
	code, out, errOut := cli(CLI.Report, append([]string{"sla", "--json", "--config", s.config}, args...)...)
	var rows []rma.SLARow
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("report sla --json %v: exit %d, %v\nstdout:\n%s\nstderr:\n%s", args, code, err, out, errOut)
	}
	return rows
}

func reportCases(rows []rma.SLARow) []string {
	var ids []string
	for _, r := range rows {
		if !slices.Contains(ids, r.CaseID) {
			ids = append(ids, r.CaseID)
		}
	}
	slices.Sort(ids)
	return ids
}

func findRow(rows []rma.SLARow, id, clock string) (rma.SLARow, bool) {
	for _, r := range rows {
		if r.CaseID == id && r.Clock == clock {
			return r, true
		}
	}
	return rma.SLARow{}, false
}

// TestReportSLACLI: `hsm-agent report sla` on a real state database: the
// table, --json, --csv (read back with encoding/csv), the period filters
// and the errors of bad dates.
func TestReportSLACLI(t *testing.T) {
	t.Parallel()
	s := reportSite(t)

	rows := reportJSON(t, s)
	if got := reportCases(rows); !slices.Equal(got, []string{"A", "B", "C", "D"}) {
		t.Fatalf("cases in the report: %v, want A B C D", got)
	}
	for _, want := range []struct {
		id, clock, status, elapsed, contract string
		credit                               bool
	}{
		{"A", "initial_response", "missed", "19h0m0s", "C-PP", true},
		{"B", "initial_response", "met", "3h30m0s", "C-P", true},
		{"B", "replacement_ship", "met", "10h30m0s", "C-P", true},
		{"C", "initial_response", "missed", "8h30m0s", "C-S", false},
		{"C", "repair_return", "not_reached", "0s", "C-S", false},
		{"D", "initial_response", "pending", "", "C-P", true},
	} {
		r, ok := findRow(rows, want.id, want.clock)
		if !ok || r.Status != want.status || (want.elapsed != "" && r.ElapsedText != want.elapsed) ||
			r.ContractID != want.contract || r.CreditEligible != want.credit || r.Region != "emea" {
			t.Errorf("%s %s: %+v\nwant %s, elapsed %s, contract %s, credits %v", want.id, want.clock, r, want.status, want.elapsed, want.contract, want.credit)
		}
	}

	code, table, errOut := cli(CLI.Report, "sla", "--config", s.config)
	if code != 0 || len(strings.Split(strings.TrimSpace(table), "\n")) != len(rows)+1 {
		t.Fatalf("report sla: exit %d, %d lines for %d rows\n%s\n%s", code, len(strings.Split(table, "\n")), len(rows), table, errOut)
	}
	lines := strings.Split(table, "\n")
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if l != "" && !strings.HasPrefix(l[col:], "met") && !strings.HasPrefix(l[col:], "missed") &&
			!strings.HasPrefix(l[col:], "pending") && !strings.HasPrefix(l[col:], "not_reached") {
			t.Errorf("table column STATUS is not aligned in line %q", l)
		}
	}
	if !strings.Contains(table, "C-PP") || !regexpLine(table, `^A\s+hsm-premium-plus\s.*initial_response\s+2026-03-20T19:00:00Z\s+2026-03-21T10:00:00Z\s+missed\s+19h0m0s\s+wall\s+yes$`) ||
		!regexpLine(table, `^C\s.*\srepair_return\s+-\s+-\s+not_reached\s.*\sbusiness\s+no$`) {
		t.Errorf("table lacks the claim evidence:\n%s", table)
	}

	code, out, errOut := cli(CLI.Report, "sla", "--csv", "--config", s.config)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != len(rows)+1 {
		t.Fatalf("report sla --csv: exit %d, %v, %d records for %d rows\n%s\n%s", code, err, len(recs), len(rows), out, errOut)
	}
	header := recs[0]
	if header[0] != "case_id" || !slices.Contains(header, "credit_eligible") || !slices.Contains(header, "elapsed_seconds") {
		t.Errorf("CSV header %v", header)
	}
	for i, rec := range recs[1:] {
		m := map[string]string{}
		for j, h := range header {
			m[h] = rec[j]
		}
		r := rows[i]
		if m["case_id"] != r.CaseID || m["clock"] != r.Clock || m["status"] != r.Status || m["contract_id"] != r.ContractID ||
			m["credit_eligible"] != fmt.Sprint(r.CreditEligible) || m["serial"] != r.Serial || m["tier"] != r.Tier {
			t.Errorf("CSV record %d %v does not match the JSON row %+v", i+1, rec, r)
		}
		if r.Status != "pending" && (m["elapsed_seconds"] != fmt.Sprint(r.ElapsedSeconds) || m["due"] != reportTime(r.Due)) {
			t.Errorf("CSV record %d %v: elapsed or due differ from the JSON row %+v", i+1, rec, r)
		}
	}
}

// TestReportSLACLIPeriod: --since and --until filter by the opening (a
// YYYY-MM-DD until includes its day); a bad date or an empty period is
// exit 2 naming the flag and the formats.
func TestReportSLACLIPeriod(t *testing.T) {
	t.Parallel()
	s := reportSite(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--until", "2026-03-20"}, []string{"A", "B"}}, // the whole day
		{[]string{"--until", "2026-03-20T15:00:00Z"}, nil},      // RFC 3339: before that moment
		{[]string{"--since", "2026-03-21", "--until", "2026-04-01"}, []string{"C"}},
		{[]string{"--since", "2026-04-01T10:00:01Z"}, []string{"D"}},
	} {
		if got := reportCases(reportJSON(t, s, tc.args...)); !slices.Equal(got, tc.want) {
			t.Errorf("report sla %v: cases %v, want %v", tc.args, got, tc.want)
		}
	}

	for _, tc := range []struct{ args []string }{
		{[]string{"--since", "2026-13-01"}},
		{[]string{"--until", "yesterday"}},
		{[]string{"--since", "20.03.2026"}},
	} {
		code, out, errOut := cli(CLI.Report, append([]string{"sla", "--config", s.config}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.args[0]+" "+fmt.Sprintf("%q", tc.args[1])) ||
			!strings.Contains(errOut, "YYYY-MM-DD") || !strings.Contains(errOut, "RFC 3339") {
			t.Errorf("report sla %v: exit %d\nstdout %q\nstderr %q\nwant exit 2 naming the flag, its value and the formats", tc.args, code, out, errOut)
		}
	}
	if code, _, errOut := cli(CLI.Report, "sla", "--config", s.config, "--since", "2026-04-02", "--until", "2026-04-01"); code != 2 || !strings.Contains(errOut, "is not before --until") {
		t.Errorf("an empty period: exit %d %s", code, errOut)
	}
	if code, _, errOut := cli(CLI.Report, "sla", "--config", s.config, "--json", "--csv"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("--json with --csv: exit %d %s; want the usage", code, errOut)
	}
}

func reportTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func regexpLine(text, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range strings.Split(text, "\n") {
		if re.MatchString(strings.TrimRight(l, " ")) {
			return true
		}
	}
	return false
}

// TestReportSLAAPIMatchesCLI: GET /api/v1/reports/sla of a running agent
// answers the same rows as `report sla --json` on the same store, with
// and without a period; a bad date is a 400 naming the parameter.
func TestReportSLAAPIMatchesCLI(t *testing.T) {
	t.Parallel()
	s := reportSite(t)
	ra := startAgent(t, s.config)
	for _, q := range []string{"", "?since=2026-03-21", "?until=2026-03-20"} {
		code, body, err := httpGet(ra.url + "/api/v1/reports/sla" + q)
		var api []rma.SLARow
		if err == nil {
			err = json.Unmarshal([]byte(body), &api)
		}
		if code != http.StatusOK || err != nil {
			t.Fatalf("GET /api/v1/reports/sla%s: %d %v\n%s", q, code, err, body)
		}
		var args []string
		if k, v, ok := strings.Cut(strings.TrimPrefix(q, "?"), "="); ok {
			args = []string{"--" + k, v}
		}
		cliRows := reportJSON(t, s, args...)
		if len(api) == 0 || len(api) != len(cliRows) {
			t.Fatalf("%s: API %d rows, CLI %d rows", q, len(api), len(cliRows))
		}
		for i := range api {
			a, c := api[i], cliRows[i]
			if a.Status == rma.SLAPending && c.Status == rma.SLAPending {
				// counted up to each call's own now
				a.ElapsedText, a.ElapsedSeconds, c.ElapsedText, c.ElapsedSeconds = "", 0, "", 0
			}
			if !reflect.DeepEqual(a, c) {
				t.Errorf("%s row %d: API %+v\nCLI %+v", q, i, a, c)
			}
		}
	}
	if code, body := ra.request(t, http.MethodGet, "/api/v1/reports/sla", "evil.example"); code != http.StatusForbidden {
		t.Errorf("GET /api/v1/reports/sla with a rebound Host: %d %s; want 403", code, body)
	}
	code, body, err := httpGet(ra.url + "/api/v1/reports/sla?since=" + "2026-02-30")
	var e map[string]string
	if err != nil || code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || !strings.HasPrefix(e["error"], `since "2026-02-30"`) {
		t.Errorf("a bad date: %d %v %s; want 400 with a JSON error naming since", code, err, body)
	}
}

// TestReportSLALeftOut: a case whose device left the inventory (its
// contract and region are unknown) is named on stderr with the reason and
// the exit is 1; the other cases are still reported.
func TestReportSLALeftOut(t *testing.T) {
	t.Parallel()
	s := reportSite(t)
	st, err := store.Open(filepath.Join(s.dir, "state", StateDBName))
	if err != nil {
		t.Fatal(err)
	}
	writeReportCase(t, st, "E", "SN-GONE", "hsm-gone", "premium", "2026-03-20T15:00:00Z")
	_ = st.Close()
	code, out, errOut := cli(CLI.Report, "sla", "--json", "--config", s.config)
	var rows []rma.SLARow
	if code != 1 || json.Unmarshal([]byte(out), &rows) != nil || !slices.Equal(reportCases(rows), []string{"A", "B", "C", "D"}) ||
		!strings.Contains(errOut, "case E is left out") || !strings.Contains(errOut, "no longer in the inventory") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1, cases A-D, E named on stderr with the reason", code, out, errOut)
	}
}
