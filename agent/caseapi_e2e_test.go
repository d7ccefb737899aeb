package agent

// End-to-end tests of the RMA flow events (issue 10 section 2): a real
// SoftHSM2 fault through the fault module, the agent in-process, the case
// driven through the case API and the CLI, and the fake desk receiving
// case.<state> events.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

const apiTestToken = "s3cret-api-token-for-tests-0123456789"

// apiCall is one answer of the case API.
type apiCall struct {
	Status int
	Body   string
}

// post sends body to POST /api/v1/cases/{id}/events with the token ("" for
// no Authorization header).
func (ra *runningAgent) postEvent(tb testing.TB, id, token, body string) apiCall {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, ra.url+"/api/v1/cases/"+id+"/events", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiCall{Status: resp.StatusCode, Body: string(b)}
}

// caseView reads GET /api/v1/cases/{id}.
func (ra *runningAgent) caseView(tb testing.TB, id string) CaseView {
	tb.Helper()
	code, body, err := httpGet(ra.url + "/api/v1/cases/" + id)
	if err != nil || code != http.StatusOK {
		tb.Fatalf("GET /api/v1/cases/%s: %d %v %s", id, code, err, body)
	}
	var v CaseView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		tb.Fatalf("GET /api/v1/cases/%s: %v\n%s", id, err, body)
	}
	return v
}

// flowSite is one premium (advance replacement) token with the given extra
// settings, failed as missing until its case reached both desks; it
// returns the running agent and the case ID.
func flowSite(t *testing.T, settings string) (*e2eSite, *runningAgent, string) {
	t.Helper()
	s := newE2ESite(t, 1)
	tokenFile := filepath.Join(s.dir, "api.token")
	if err := os.WriteFile(tokenFile, []byte(apiTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.write(t, siteConfig{Settings: strings.ReplaceAll(settings, "TOKENFILE", tokenFile), Devices: s.device(0, "hsm-0", devPremium)}, testTimings)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "the case at both desks", func() bool {
		return len(s.desk.accepted("vendor")) == 1 && len(s.desk.accepted("internal")) == 1
	})
	return s, ra, s.desk.accepted("vendor")[0].Event.Case.ID
}

// TestCaseFlowThroughAPIAndCLI drives a whole advance replacement: every
// refused API call answers its JSON error and changes neither the case nor
// the outbox; confirm, authorize and ship come through the API, install,
// return (refused without --attest zeroized) and close through the CLI;
// both desks receive each case.<state> with the RMA number.
func TestCaseFlowThroughAPIAndCLI(t *testing.T) {
	t.Parallel()
	s, ra, id := flowSite(t, "api: {token_file: TOKENFILE}")

	snapshot := func() string {
		d := s.caseDetail(t, id)
		return fmt.Sprintf("state %s seq %d rma %q rows %d", d.State, d.Seq, d.RMANumber, len(d.Deliveries))
	}
	before := snapshot()
	for _, tc := range []struct {
		name, id, token, body string
		status                int
		says                  string
	}{
		{"no token", id, "", `{"event": "confirm"}`, http.StatusUnauthorized, "bearer token"},
		{"bad token", id, "wrong", `{"event": "confirm"}`, http.StatusUnauthorized, "bearer token"},
		{"almost the token", id, apiTestToken[:len(apiTestToken)-1], `{"event": "confirm"}`, http.StatusUnauthorized, "bearer token"},
		{"unknown case", "HA-NOPE", apiTestToken, `{"event": "confirm"}`, http.StatusNotFound, "HA-NOPE"},
		{"illegal event", id, apiTestToken, `{"event": "ship", "tracking": "1Z"}`, http.StatusConflict, "allowed here: confirm, close, cancel, approve, note"},
		{"unknown event", id, apiTestToken, `{"event": "teleport"}`, http.StatusConflict, "teleport"},
		{"not JSON", id, apiTestToken, `event=confirm`, http.StatusBadRequest, "not a case event"},
		{"unknown field", id, apiTestToken, `{"event": "confirm", "rma_no": "1"}`, http.StatusBadRequest, "rma_no"},
		{"no event", id, apiTestToken, `{"note": "hi"}`, http.StatusBadRequest, `"event" is missing`},
		{"bad at", id, apiTestToken, `{"event": "confirm", "at": "yesterday"}`, http.StatusBadRequest, "RFC 3339"},
		{"future at", id, apiTestToken, `{"event": "confirm", "at": "2999-01-01T00:00:00Z"}`, http.StatusBadRequest, "future"},
		{"note without text", id, apiTestToken, `{"event": "note"}`, http.StatusBadRequest, "note"},
	} {
		got := ra.postEvent(t, tc.id, tc.token, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		if got.Status != tc.status || json.Unmarshal([]byte(got.Body), &e) != nil || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s: %d %s, want %d with a JSON error saying %q", tc.name, got.Status, got.Body, tc.status, tc.says)
		}
		if now := snapshot(); now != before {
			t.Errorf("%s was refused but changed the case: %s, before %s", tc.name, now, before)
		}
	}

	// confirm, authorize, ship through the API.
	for _, body := range []string{
		`{"event": "confirm", "note": "fault validated by the vendor"}`,
		`{"event": "authorize", "rma": "RMA-77"}`,
		`{"event": "ship", "tracking": "1Z-REPLACEMENT"}`,
	} {
		if got := ra.postEvent(t, id, apiTestToken, body); got.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", body, got.Status, got.Body)
		}
	}
	v := ra.caseView(t, id)
	if v.State != rma.StateReplacementShipped || v.RMANumber != "RMA-77" || v.Tracking != "1Z-REPLACEMENT" || len(v.Events) < 4 || v.Due == nil {
		t.Errorf("GET after ship: %+v", v.Case)
	}

	// install, return, close through the CLI.
	if code, _, errOut := cli(CLI.CaseAction, id, "receive", "--config", s.config); code == 0 || !strings.Contains(errOut, "allowed here: install, close, cancel, approve, note") {
		t.Errorf("receive in an advance replacement: exit %d %s", code, errOut)
	}
	if code, out, errOut := cli(CLI.CaseAction, id, "install", "--config", s.config); code != 0 {
		t.Fatalf("install: exit %d %s%s", code, out, errOut)
	}
	if code, _, errOut := cli(CLI.CaseAction, id, "return", "--tracking", "1Z-BACK", "--config", s.config); code == 0 || !strings.Contains(errOut, "--attest zeroized") {
		t.Errorf("return without attestation: exit %d %s", code, errOut)
	}
	if code, out, errOut := cli(CLI.CaseAction, id, "return", "--tracking", "1Z-BACK", "--attest", "zeroized", "--at", "2026-01-01T00:00:00Z", "--config", s.config); code == 0 {
		t.Errorf("return dated before the case opened was accepted: %s", out)
	} else if !strings.Contains(errOut, "before the case opened") {
		t.Errorf("return dated before the case opened: %s", errOut)
	}
	if code, out, errOut := cli(CLI.CaseAction, id, "return", "--tracking", "1Z-BACK", "--attest", "zeroized", "--config", s.config); code != 0 {
		t.Fatalf("return: exit %d %s%s", code, out, errOut)
	}
	if code, out, errOut := cli(CLI.CaseAction, id, "close", "--config", s.config); code != 0 || !strings.Contains(out, "state closed") {
		t.Fatalf("close: exit %d %s%s", code, out, errOut)
	}

	want := []string{"case.confirmed", "case.authorized", "case.replacement_shipped", "case.replacement_installed", "case.faulty_returned", "case.closed"}
	for _, desk := range []string{"vendor", "internal"} {
		waitUntil(t, e2eWait, desk+" receives the flow", func() bool { return len(s.desk.accepted(desk)) >= 1+len(want) })
		calls := s.desk.accepted(desk)[1:]
		var got []string
		for i, c := range calls {
			got = append(got, c.Event.Event)
			if i > 0 && c.Event.Case.RMANumber != "RMA-77" {
				t.Errorf("%s %s: rma number %q", desk, c.Event.Event, c.Event.Case.RMANumber)
			}
			if c.Event.Step == nil || c.Key != rma.IdempotencyKey(id, c.Event.Sequence) {
				t.Errorf("%s %s: step %+v key %s", desk, c.Event.Event, c.Event.Step, c.Key)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s received %v, want %v", desk, got, want)
		}
		ret := calls[4].Event
		if ret.Step == nil || ret.Step.Attest != rma.AttestZeroized || !strings.HasPrefix(ret.Step.Actor, "operator") || ret.Case.Tracking != "1Z-BACK" {
			t.Errorf("%s faulty_returned: %+v", desk, ret.Step)
		}
		if calls[0].Event.Step.Actor != rma.ActorAPI || calls[0].Event.Step.Note != "fault validated by the vendor" {
			t.Errorf("%s confirmed: %+v", desk, calls[0].Event.Step)
		}
	}
	if n := len(s.desk.all("pager")); n != 0 {
		t.Errorf("the pager got %d flow events", n)
	}
	if got := ra.postEvent(t, id, apiTestToken, `{"event": "cancel"}`); got.Status != http.StatusConflict || !strings.Contains(got.Body, "already closed") {
		t.Errorf("cancel a closed case: %d %s", got.Status, got.Body)
	}
}

// Without a token the case events endpoint is off (404) while GET works;
// with rma.require_zeroize_attestation false, ship and return need no
// attestation.
func TestCaseAPIOffAndAttestationNotRequired(t *testing.T) {
	t.Parallel()
	s, ra, id := flowSite(t, "rma: {require_zeroize_attestation: false}")
	if got := ra.postEvent(t, id, apiTestToken, `{"event": "confirm"}`); got.Status != http.StatusNotFound || !strings.Contains(got.Body, "api.token_file") {
		t.Errorf("POST with no token configured: %d %s", got.Status, got.Body)
	}
	if v := ra.caseView(t, id); v.State != rma.StateOpen || len(v.Events) == 0 || v.Events[0].Type != rma.EventOpened {
		t.Errorf("GET /api/v1/cases/%s: %+v", id, v)
	}
	for _, args := range [][]string{{"confirm"}, {"authorize", "--rma", "R-1"}, {"ship", "--tracking", "T-1"}, {"install"}, {"return", "--tracking", "T-2"}} {
		if code, out, errOut := cli(CLI.CaseAction, append([]string{id}, append(args, "--config", s.config)...)...); code != 0 {
			t.Fatalf("%v: exit %d %s%s", args, code, out, errOut)
		}
	}
	if d := s.caseDetail(t, id); d.State != rma.StateFaultyReturned || !d.ClearedAt.IsZero() {
		t.Errorf("state %s cleared_at %s, want faulty_returned and not cleared", d.State, d.ClearedAt)
	}

	// The device recovers: cleared_at in the desk event, the API and the CLI.
	if err := s.faults.ClearToken(s.serial(0)); err != nil {
		t.Fatal(err)
	}
	var cleared rma.DeskEvent
	waitUntil(t, e2eWait, "case.cleared at the internal desk", func() bool {
		for _, c := range s.desk.accepted("internal") {
			if c.Event.Event == rma.EventCleared {
				cleared = c.Event
				return true
			}
		}
		return false
	})
	at := cleared.Case.ClearedAt
	if at.IsZero() || !strings.Contains(string(mustJSON(t, cleared)), `"cleared_at"`) {
		t.Fatalf("case.cleared without cleared_at: %+v", cleared.Case)
	}
	if v := ra.caseView(t, id); !v.ClearedAt.Equal(at) || v.State != rma.StateFaultyReturned {
		t.Errorf("GET: cleared_at %s state %s, want %s faulty_returned", v.ClearedAt, v.State, at)
	}
	stamp := at.UTC().Format("2006-01-02T15:04:05Z")
	if code, out, _ := cli(CLI.Cases, "--config", s.config); code != 0 || !strings.Contains(out, "CLEARED") || !strings.Contains(out, stamp) {
		t.Errorf("cases: exit %d, want the cleared time %s\n%s", code, stamp, out)
	}
	if code, out, _ := cli(CLI.Cases, "show", id, "--config", s.config); code != 0 || !strings.Contains(out, "cleared "+stamp) || !strings.Contains(out, "rma R-1, tracking T-2") {
		t.Errorf("cases show: exit %d\n%s", code, out)
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
