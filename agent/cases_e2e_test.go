package agent

// End-to-end tests of the case pipeline (issue 3): real SoftHSM2 tokens
// behind the fault module, the agent running in-process with real probe
// workers (this test binary re-executed), and an httptest webhook desk that
// behaves like a real desk: it records every request, answers a ticket ID
// and deduplicates by Idempotency-Key.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/internal/testutil"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/bundle"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// vendorPhone is the vendor's EMEA support number in every test config.
const vendorPhone = "+44 20 0000 0000"

// e2eWait bounds every wait for the pipeline in these tests; the real
// times are a few seconds (see the timings in e2eSite.write).
const e2eWait = 45 * time.Second

// deskCall is one request a fakeDesk received.
type deskCall struct {
	Desk   string
	Key    string // Idempotency-Key
	Header http.Header
	Body   []byte
	Event  rma.DeskEvent
	Status int    // what the desk answered
	Ticket string // the ticket ID answered (2xx only)
	Dup    bool   // a resend of a key the desk had already accepted
	At     time.Time
}

// fakeDesk is an httptest webhook desk serving /desk/{name}. It answers
// {"ticket_id": "..."}, creating one ticket per desk and Idempotency-Key: a
// resend of an accepted key gets the same ticket and creates none. respond
// may answer a request with an error instead.
type fakeDesk struct {
	srv *httptest.Server

	mu      sync.Mutex
	calls   []deskCall
	tickets map[string]string // desk + "\x00" + key -> ticket
	n       int
	respond func(desk, key string, attempt int) (status int, header http.Header)
}

func newFakeDesk(tb testing.TB) *fakeDesk {
	d := &fakeDesk{tickets: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /desk/{name}", d.serve)
	d.srv = httptest.NewServer(mux)
	tb.Cleanup(d.srv.Close)
	return d
}

func (d *fakeDesk) url(name string) string { return d.srv.URL + "/desk/" + name }

// setRespond installs (or with nil removes) the error hook. attempt counts
// the earlier requests of the same desk and key.
func (d *fakeDesk) setRespond(fn func(desk, key string, attempt int) (int, http.Header)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.respond = fn
}

func (d *fakeDesk) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := deskCall{Desk: r.PathValue("name"), Key: r.Header.Get("Idempotency-Key"), Header: r.Header.Clone(), Body: body, At: time.Now()}
	_ = json.Unmarshal(body, &c.Event)
	d.mu.Lock()
	defer d.mu.Unlock()
	attempt := 0
	for _, p := range d.calls {
		if p.Desk == c.Desk && p.Key == c.Key {
			attempt++
		}
	}
	if d.respond != nil {
		if status, h := d.respond(c.Desk, c.Key, attempt); status != 0 {
			c.Status = status
			d.calls = append(d.calls, c)
			for k, v := range h {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error": "desk unavailable"}`)
			return
		}
	}
	id := c.Desk + "\x00" + c.Key
	ticket, dup := d.tickets[id]
	if !dup {
		d.n++
		ticket = fmt.Sprintf("%s-%d", strings.ToUpper(c.Desk), d.n)
		if c.Key != "" {
			d.tickets[id] = ticket
		}
	}
	c.Status, c.Ticket, c.Dup = http.StatusOK, ticket, dup
	d.calls = append(d.calls, c)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"ticket_id\": %q}\n", ticket)
}

// all returns the requests to desk ("" = every desk), in arrival order.
func (d *fakeDesk) all(desk string) []deskCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []deskCall
	for _, c := range d.calls {
		if desk == "" || c.Desk == desk {
			out = append(out, c)
		}
	}
	return out
}

// accepted returns the requests of desk that created a ticket: one per
// event the desk has.
func (d *fakeDesk) accepted(desk string) []deskCall {
	return where(d.all(desk), func(c deskCall) bool { return c.Status == http.StatusOK && !c.Dup })
}

// where keeps the calls for which keep holds.
func where(calls []deskCall, keep func(deskCall) bool) []deskCall {
	var out []deskCall
	for _, c := range calls {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// forCase filters calls by case ID.
func forCase(calls []deskCall, caseID string) []deskCall {
	return where(calls, func(c deskCall) bool { return c.Event.Case.ID == caseID })
}

// bySerial filters calls by the case's serial.
func bySerial(calls []deskCall, serial string) []deskCall {
	return where(calls, func(c deskCall) bool { return c.Event.Case.Serial == serial })
}

func describeCalls(calls []deskCall) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "\n  %s %s %s key=%s status=%d ticket=%s dup=%v case=%s serial=%s sev=%d",
			c.At.Format("15:04:05.000"), c.Desk, c.Event.Event, c.Key, c.Status, c.Ticket, c.Dup, c.Event.Case.ID, c.Event.Case.Serial, c.Event.Case.Severity)
	}
	return b.String()
}

// e2eSite is a SoftHSM2 fleet behind the fault module, a fake desk and the
// directory of one agent.
type e2eSite struct {
	fleet  *pkcs11test.Fleet
	faults *pkcs11test.Faults
	desk   *fakeDesk
	dir    string
	config string
}

func newE2ESite(tb testing.TB, tokens int) *e2eSite {
	tb.Helper()
	dir := tb.TempDir()
	faults, err := pkcs11test.NewFaults(filepath.Join(dir, "faults"))
	if err != nil {
		tb.Fatal(err)
	}
	return &e2eSite{fleet: pkcs11testtb.NewFleet(tb, tokens), faults: faults, desk: newFakeDesk(tb),
		dir: dir, config: filepath.Join(dir, "config.yml")}
}

func (s *e2eSite) serial(i int) string { return s.fleet.Tokens[i].Serial }

// device is one inventory entry for token i on module soft.
func (s *e2eSite) device(i int, name, fields string) string {
	return fmt.Sprintf("  - {name: %s, serial: %q, module: soft, %s}\n", name, s.serial(i), fields)
}

// defaultDesks are the vendor (with an EMEA phone), internal and pager
// webhook desks of the fake desk.
func (s *e2eSite) defaultDesks() string {
	return fmt.Sprintf("  - {name: vendor, type: webhook, role: vendor, url: %q, phones: {emea: %q}}\n"+
		"  - {name: internal, type: webhook, role: internal, url: %q}\n"+
		"  - {name: pager, type: webhook, role: pager, url: %q}\n",
		s.desk.url("vendor"), vendorPhone, s.desk.url("internal"), s.desk.url("pager"))
}

// siteConfig is what a test puts into its configuration.
type siteConfig struct {
	Settings string // top-level settings; the test timings fill in what it leaves out
	Pools    string // entries under pools:
	Devices  string // entries under devices:
	Desks    string // entries under desks:; "" = defaultDesks
	Module   string // extra lines under the module's env:
}

// testTimings are the short timings of these tests; defaults are the
// product's own (15s poll, 2s recheck, 3 confirmations).
var testTimings = []string{"poll_interval: 300ms", "recheck_interval: 100ms", "confirm_polls: 3", "probe_timeout: 2s", "listen: 127.0.0.1:0"}

func (s *e2eSite) write(tb testing.TB, sc siteConfig, timings []string) {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %q\n%s\n", filepath.Join(s.dir, "state"), sc.Settings)
	for _, def := range timings {
		if !strings.Contains(sc.Settings, strings.SplitN(def, ":", 2)[0]+":") {
			fmt.Fprintln(&b, def)
		}
	}
	fmt.Fprintf(&b, "modules:\n  - name: soft\n    library: %q\n    env:\n", pkcs11testtb.FaultModule(tb))
	env := s.fleet.Env()
	maps.Copy(env, s.faults.Env())
	env[testutil.WorkerEnv] = "1" // the worker is this test binary (TestMain)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "      %s: %q\n", k, env[k])
	}
	b.WriteString(sc.Module)
	if sc.Pools != "" {
		fmt.Fprintf(&b, "pools:\n%s", sc.Pools)
	}
	fmt.Fprintf(&b, "devices:\n%s", sc.Devices)
	desks := sc.Desks
	if desks == "" {
		desks = s.defaultDesks()
	}
	fmt.Fprintf(&b, "desks:\n%s", desks)
	if err := os.WriteFile(s.config, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// startE2E runs the agent in-process on s.config and returns after its
// first poll; a failing test also logs what the desk received.
func startE2E(tb testing.TB, s *e2eSite) *runningAgent {
	tb.Helper()
	ra := startAgentWeb(tb, s.config, "")
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("desk calls:%s", describeCalls(s.desk.all("")))
		}
	})
	waitUntil(tb, 20*time.Second, "the first poll (/-/ready)", func() bool {
		code, _, err := httpGet(ra.url + "/-/ready")
		return err == nil && code == http.StatusOK
	})
	return ra
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitUntil polls cond every 25ms until it holds, failing tb after timeout.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitPolls waits until the case engine has processed n more polls
// (counted, not timed), so that a test can then assert that nothing
// happened over them.
func (ra *runningAgent) waitPolls(tb testing.TB, n int) {
	tb.Helper()
	want := ra.polls.Load() + int64(n)
	waitUntil(tb, e2eWait+time.Duration(n)*10*time.Second, fmt.Sprintf("%d more processed polls", n), func() bool { return ra.polls.Load() >= want })
}

// allCases lists every case (open or not) through the agent's API.
func (ra *runningAgent) allCases(tb testing.TB) []rma.Case {
	tb.Helper()
	code, body, err := httpGet(ra.url + "/api/v1/cases?all=1")
	if err != nil || code != http.StatusOK {
		tb.Fatalf("GET /api/v1/cases: %d %v %s", code, err, body)
	}
	var cases []rma.Case
	if err := json.Unmarshal([]byte(body), &cases); err != nil {
		tb.Fatalf("/api/v1/cases: %v\n%s", err, body)
	}
	return cases
}

// devices returns the agent's device reports by device name.
func (ra *runningAgent) devices(tb testing.TB) map[string]DeviceReport {
	tb.Helper()
	code, body, err := httpGet(ra.url + "/api/v1/devices")
	if err != nil || code != http.StatusOK {
		tb.Fatalf("GET /api/v1/devices: %d %v", code, err)
	}
	var reps []DeviceReport
	if err := json.Unmarshal([]byte(body), &reps); err != nil {
		tb.Fatalf("/api/v1/devices: %v", err)
	}
	out := map[string]DeviceReport{}
	for _, r := range reps {
		out[r.Device] = r
	}
	return out
}

// waitHealthy waits until every named device reports healthy.
func (ra *runningAgent) waitHealthy(tb testing.TB, names ...string) {
	tb.Helper()
	waitUntil(tb, 20*time.Second, fmt.Sprintf("devices %v healthy", names), func() bool {
		devs := ra.devices(tb)
		for _, n := range names {
			if devs[n].State != "healthy" {
				return false
			}
		}
		return true
	})
}

// cli runs one of the case commands in-process.
func cli(fn func(context.Context, []string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := fn(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// caseDetail runs `cases show ID --json` on the site's store.
func (s *e2eSite) caseDetail(tb testing.TB, id string) CaseDetail {
	tb.Helper()
	code, out, errOut := cli(CLI.Cases, "show", id, "--json", "--config", s.config)
	if code != 0 {
		tb.Fatalf("cases show %s --json: exit %d %s", id, code, errOut)
	}
	var d CaseDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		tb.Fatalf("cases show %s --json: %v\n%s", id, err, out)
	}
	return d
}

// devPremium is a development device on a premium contract: its hardware
// faults are severity 2 with advance replacement, and page no one.
const devPremium = "environment: development, contract: {id: C-1, tier: premium, expires: 2030-01-31, region: emea}"

// newDevSite is a site of one devPremium device, hsm-0, on the default desks.
func newDevSite(tb testing.TB) *e2eSite {
	tb.Helper()
	s := newE2ESite(tb, 1)
	s.write(tb, siteConfig{Devices: s.device(0, "hsm-0", devPremium)}, testTimings)
	return s
}

// outOfHoursPages counts the cases that page because they are severity 2
// for the vendor and opened while the vendor's EMEA desk was closed
// (rma.PageRule, support-model.md section 7): the e2e agents run on the
// wall clock, so these depend on when the test runs.
func outOfHoursPages(tb testing.TB, cases []rma.Case) int {
	tb.Helper()
	cal, err := calendar.New(calendar.EMEA, calendar.Spec{})
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		vendor := (c.Kind == rma.KindHardware || c.Kind == rma.KindFirmware) && c.Reason == ""
		if page, _ := rma.PageRule(c.Severity, c.Tier, cal, c.OpenedAt); c.Severity == rma.SeverityHigh && vendor && page {
			n++
		}
	}
	return n
}

func setFault(tb testing.TB, s *e2eSite, i int, f pkcs11test.Fault, value string) {
	tb.Helper()
	if err := s.faults.Set(s.serial(i), f, value); err != nil {
		tb.Fatal(err)
	}
}

// TestCaseSeverityMatrix runs one agent over seven tokens and fails six
// of them at once, each in a different situation of support-model.md
// section 2, then checks that every fault made exactly one case with the
// right severity, that each desk got exactly the events its role asks for,
// and that nothing more arrives while the faults persist.
func TestCaseSeverityMatrix(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 7)
	contract := func(id, tier, expires string) string {
		return fmt.Sprintf("contract: {id: %s, tier: %s, expires: %s, region: emea}", id, tier, expires)
	}
	s.write(t, siteConfig{
		Settings: "firmware: {minimum: \"2.0\"}\n",
		Pools:    "  - {name: solo-a, min_healthy: 1}\n  - {name: duo, min_healthy: 1}\n  - {name: solo-e, min_healthy: 1}\n",
		Devices: s.device(0, "hsm-a", "environment: production, pool: solo-a, "+contract("C-A", "premium-plus", "2030-01-31")) +
			s.device(1, "hsm-b0", "environment: production, pool: duo, "+contract("C-B0", "premium-plus", "2030-01-31")) +
			s.device(2, "hsm-b1", "environment: production, pool: duo, "+contract("C-B1", "premium-plus", "2030-01-31")) +
			s.device(3, "hsm-c", "environment: development, "+contract("C-C", "premium", "2030-01-31")) +
			s.device(4, "hsm-d", "environment: production, "+contract("C-D", "premium-plus", "2030-01-31")) +
			s.device(5, "hsm-e", "environment: production, pool: solo-e, commissioned: false, "+contract("C-E", "premium-plus", "2030-01-31")) +
			s.device(6, "hsm-f", "environment: production, "+contract("C-F", "premium-plus", "2020-01-31")),
	}, testTimings)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-a", "hsm-b0", "hsm-b1", "hsm-c", "hsm-d", "hsm-e", "hsm-f")

	// The expired contract opens its own (contract) case at start.
	waitUntil(t, e2eWait, "the contract case of hsm-f at the internal desk", func() bool { return len(s.desk.accepted("internal")) == 1 })

	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	setFault(t, s, 1, pkcs11test.FaultMissing, "")
	setFault(t, s, 3, pkcs11test.FaultDeviceError, "C_GenerateRandom")
	setFault(t, s, 4, pkcs11test.FaultFirmware, "1.0")
	setFault(t, s, 5, pkcs11test.FaultMissing, "")
	setFault(t, s, 6, pkcs11test.FaultMissing, "")

	// vendor: a, b0, c, d, e; internal: those, f's hardware case and f's
	// contract case; pager: a (after the vendor ticket) and f.
	waitUntil(t, e2eWait, "5 vendor, 7 internal and 2 pager events", func() bool {
		return len(s.desk.accepted("vendor")) >= 5 && len(s.desk.accepted("internal")) >= 7 && len(s.desk.accepted("pager")) >= 2
	})
	// Ten more polls (at poll_interval 300ms they also span a page check,
	// rma.DefaultPageCheckInterval): nothing else may arrive.
	ra.waitPolls(t, 10)
	cases := ra.allCases(t)
	extra := outOfHoursPages(t, cases) // severity 2 opened while the vendor's desk was closed
	vendor, internal, pager := s.desk.accepted("vendor"), s.desk.accepted("internal"), s.desk.accepted("pager")
	if len(vendor) != 5 || len(internal) != 7 || len(pager) != 2+extra || len(s.desk.all("")) != 14+extra {
		t.Fatalf("want exactly 5 vendor, 7 internal, %d pager events and no resends; got:%s", 2+extra, describeCalls(s.desk.all("")))
	}
	if len(cases) != 7 {
		t.Fatalf("want 7 cases (6 faults + 1 contract), got %d: %+v", len(cases), cases)
	}
	caseOf := map[string]rma.Case{} // by dedup key
	for _, c := range cases {
		if _, dup := caseOf[c.DedupKey]; dup {
			t.Errorf("two cases with dedup key %s", c.DedupKey)
		}
		caseOf[c.DedupKey] = c
	}

	// opened checks the one case.opened event a desk has for the serial.
	opened := func(t *testing.T, calls []deskCall, serial string, kind rma.Kind, class string) rma.DeskEvent {
		t.Helper()
		mine := bySerial(calls, serial)
		if len(mine) != 1 {
			t.Fatalf("want exactly one event for serial %s, got %d:%s", serial, len(mine), describeCalls(mine))
		}
		ev := mine[0].Event
		if ev.Event != rma.EventOpened || ev.Sequence != 1 || mine[0].Key != ev.Case.ID+":1" {
			t.Errorf("want case.opened, sequence 1, Idempotency-Key <case-id>:1; got %s seq %d key %q (case %s)", ev.Event, ev.Sequence, mine[0].Key, ev.Case.ID)
		}
		if ev.Case.Kind != kind || ev.Case.Fault != class || ev.Case.DedupKey != rma.DedupKey(serial, kind, class) {
			t.Errorf("want %s/%s (dedup key %s), got %s/%s (%s)", kind, class, rma.DedupKey(serial, kind, class), ev.Case.Kind, ev.Case.Fault, ev.Case.DedupKey)
		}
		if c, ok := caseOf[ev.Case.DedupKey]; !ok || c.ID != ev.Case.ID {
			t.Errorf("desk event for case %s does not match the store's case %+v", ev.Case.ID, c)
		}
		if ev.Case.State != rma.StateOpen || ev.SentAt == "" || ev.Case.OpenedAt.IsZero() {
			t.Errorf("incomplete event: state %q sent_at %q opened_at %v", ev.Case.State, ev.SentAt, ev.Case.OpenedAt)
		}
		return ev
	}
	// noPage: no page, unless a severity-2 vendor case opened while the
	// vendor's desk was closed (then exactly one, outOfHoursPages).
	noPage := func(t *testing.T, serial string) {
		t.Helper()
		want := 0
		for _, c := range caseOf {
			if c.Serial == serial {
				want += outOfHoursPages(t, []rma.Case{c})
			}
		}
		if p := bySerial(pager, serial); len(p) != want {
			t.Errorf("%d pages expected for serial %s, got:%s", want, serial, describeCalls(p))
		}
	}

	t.Run("production premium-plus alone in its pool: severity 1 and one page with phone and vendor ticket", func(t *testing.T) {
		serial := s.serial(0)
		ev := opened(t, vendor, serial, rma.KindHardware, rma.ClassMissing)
		if ev.Case.Severity != 1 || ev.Case.Flow != rma.FlowAdvanceReplacement || ev.Case.Serial != serial || ev.Case.Tier != "premium-plus" ||
			ev.Case.Environment != "production" || ev.Case.Pool != "solo-a" || ev.Case.Device != "hsm-a" {
			t.Errorf("vendor event: want severity 1, advance-replacement, premium-plus, production, pool solo-a, hsm-a/%s; got %+v", serial, ev.Case)
		}
		if ev.Bundle == nil || ev.Bundle.ContentBase64 == "" || ev.Bundle.SHA256 == "" {
			t.Errorf("the vendor event carries no bundle: %+v", ev.Bundle)
		}
		opened(t, internal, serial, rma.KindHardware, rma.ClassMissing)
		pages := bySerial(pager, serial)
		if len(pages) != 1 {
			t.Fatalf("want exactly one page, got:%s", describeCalls(pages))
		}
		ticket := bySerial(vendor, serial)[0].Ticket
		p := pages[0].Event
		if p.Event != rma.EventPage || p.Page == nil || p.Case.ID != ev.Case.ID || !strings.HasPrefix(pages[0].Key, ev.Case.ID+":") {
			t.Fatalf("want a case.page event for case %s, got %s key %s page %+v", ev.Case.ID, p.Event, pages[0].Key, p.Page)
		}
		if p.Page.Phone != vendorPhone || p.Page.VendorRef != ticket || p.Page.Region != "emea" ||
			!strings.Contains(p.Page.Text, vendorPhone) || !strings.Contains(p.Page.Text, ticket) {
			t.Errorf("the page must carry the vendor phone %q and the vendor ticket %q; got %+v", vendorPhone, ticket, *p.Page)
		}
		if pages[0].At.Before(bySerial(vendor, serial)[0].At) {
			t.Error("the page went out before the vendor ticket")
		}
	})

	t.Run("production with a healthy pool member left: severity 2, no page", func(t *testing.T) {
		ev := opened(t, vendor, s.serial(1), rma.KindHardware, rma.ClassMissing)
		if ev.Case.Severity != 2 || ev.Case.Pool != "duo" {
			t.Errorf("want severity 2 in pool duo, got %d (%s), impact %q", ev.Case.Severity, ev.Case.Pool, ev.Case.Impact)
		}
		opened(t, internal, s.serial(1), rma.KindHardware, rma.ClassMissing)
		noPage(t, s.serial(1))
		for _, c := range cases {
			if c.Serial == s.serial(2) {
				t.Errorf("the healthy pool member got a case: %+v", c)
			}
		}
	})

	t.Run("development device fails: severity 2", func(t *testing.T) {
		ev := opened(t, vendor, s.serial(3), rma.KindHardware, rma.ClassFailed)
		if ev.Case.Severity != 2 || ev.Case.Environment != "development" || ev.Case.Flow != rma.FlowAdvanceReplacement {
			t.Errorf("want severity 2, development, advance-replacement (premium); got %d %s %s", ev.Case.Severity, ev.Case.Environment, ev.Case.Flow)
		}
		opened(t, internal, s.serial(3), rma.KindHardware, rma.ClassFailed)
		noPage(t, s.serial(3))
	})

	t.Run("firmware below minimum: severity 3, kind firmware, no page", func(t *testing.T) {
		ev := opened(t, vendor, s.serial(4), rma.KindFirmware, rma.ClassBelowMinimum)
		if ev.Case.Severity != 3 || ev.Case.Flow != rma.FlowNone {
			t.Errorf("want severity 3 and flow none, got %d %s", ev.Case.Severity, ev.Case.Flow)
		}
		opened(t, internal, s.serial(4), rma.KindFirmware, rma.ClassBelowMinimum)
		noPage(t, s.serial(4))
	})

	t.Run("commissioned: false caps severity at 3", func(t *testing.T) {
		ev := opened(t, vendor, s.serial(5), rma.KindHardware, rma.ClassMissing)
		if ev.Case.Severity > 3 || ev.Case.Severity < 1 {
			t.Errorf("want severity <= 3 for an uncommissioned device alone in its pool, got %d", ev.Case.Severity)
		}
		// Alone in its pool it would be severity 1: the cap makes it exactly 3.
		if ev.Case.Severity != 3 || !strings.Contains(ev.Case.Impact, "commissioned") {
			t.Errorf("want severity 3 with the cap named in the impact, got %d (impact %q)", ev.Case.Severity, ev.Case.Impact)
		}
		opened(t, internal, s.serial(5), rma.KindHardware, rma.ClassMissing)
		noPage(t, s.serial(5))
	})

	t.Run("expired contract: internal only, with the reason", func(t *testing.T) {
		serial := s.serial(6)
		if v := bySerial(s.desk.all("vendor"), serial); len(v) != 0 {
			t.Errorf("the vendor got events for an expired contract:%s", describeCalls(v))
		}
		var hw, ct []deskCall
		for _, c := range bySerial(internal, serial) {
			switch c.Event.Case.Kind {
			case rma.KindHardware:
				hw = append(hw, c)
			case rma.KindContract:
				ct = append(ct, c)
			}
		}
		if len(hw) != 1 || len(ct) != 1 {
			t.Fatalf("want one hardware and one contract case at the internal desk, got:%s", describeCalls(bySerial(internal, serial)))
		}
		c := hw[0].Event.Case
		if !strings.Contains(strings.ToLower(c.Reason), "expired") || c.Flow != rma.FlowNone || c.Severity != 1 {
			t.Errorf("want severity 1, flow none and a reason naming the expired contract; got severity %d flow %s reason %q", c.Severity, c.Flow, c.Reason)
		}
		// rma's policy: expiring -> 4 (information), expired -> 3 (no vendor support).
		if ct[0].Event.Case.Fault != rma.ClassExpired || ct[0].Event.Case.Severity != 3 {
			t.Errorf("want the contract case expired with severity 3, got %s severity %d", ct[0].Event.Case.Fault, ct[0].Event.Case.Severity)
		}
		// Severity 1 without a vendor case still reaches a human, at once.
		pages := bySerial(pager, serial)
		if len(pages) != 1 || pages[0].Event.Page == nil || pages[0].Event.Page.VendorRef != "" ||
			!strings.Contains(pages[0].Event.Page.Text, c.Reason) {
			t.Errorf("want one page without vendor reference quoting the reason %q, got:%s", c.Reason, describeCalls(pages))
		}
	})
}

// TestCaseBlipOpensNoCase fails a token for exactly one poll: the agent
// sees it (the poll history has one failing observation) and opens no case.
func TestCaseBlipOpensNoCase(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 1)
	// Slower polls and rechecks leave time to clear the fault right after
	// the first failing poll, before the next one.
	s.write(t, siteConfig{
		Settings: "poll_interval: 1s\nrecheck_interval: 1s\n",
		Devices:  s.device(0, "hsm-0", "environment: production, contract: {id: C-1, tier: premium-plus, expires: 2030-01-31, region: emea}"),
	}, testTimings)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")

	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	deadline := time.Now().Add(10 * time.Second)
	for ra.devices(t)["hsm-0"].State != "missing" {
		if time.Now().After(deadline) {
			t.Fatal("the missing token was never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	ra.waitHealthy(t, "hsm-0")
	ra.waitPolls(t, 5) // more polls than confirm_polls (3): counted, not timed

	if cases := ra.allCases(t); len(cases) != 0 {
		t.Errorf("a one-poll blip opened cases: %+v", cases)
	}
	if calls := s.desk.all(""); len(calls) != 0 {
		t.Errorf("a one-poll blip reached the desks:%s", describeCalls(calls))
	}
	// The poll history (from an on-demand bundle) shows exactly one failing poll.
	files := onDemandBundle(t, ra, s.serial(0))
	var hist []struct{ State string }
	if err := json.Unmarshal(files["history.json"], &hist); err != nil {
		t.Fatalf("history.json: %v\n%s", err, files["history.json"])
	}
	missing := 0
	for _, h := range hist {
		if h.State == "missing" {
			missing++
		}
	}
	if missing != 1 {
		t.Errorf("want exactly one failing poll in the history, got %d: %s", missing, files["history.json"])
	}
}

// onDemandBundle asks the running agent for a bundle, through its control
// socket as `hsm-agent bundle` does, and returns its files.
func onDemandBundle(tb testing.TB, ra *runningAgent, serial string) map[string][]byte {
	tb.Helper()
	cfg, err := config.Load(ra.config)
	if err != nil {
		tb.Fatal(err)
	}
	path, err := RequestBundle(context.Background(), cfg, serial)
	if err != nil {
		tb.Fatalf("on-demand bundle: %v", err)
	}
	if _, err := bundle.Verify(path); err != nil {
		tb.Fatalf("on-demand bundle does not verify: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return untar(tb, b)
}

// untar returns the files of a tar.gz by name.
func untar(tb testing.TB, tgz []byte) map[string][]byte { return testutil.Untar(tb, tgz) }

// TestCaseHungDeviceWhileMetricsStayFast hangs a token in every call: the
// agent opens an unresponsive case while /metrics keeps answering.
func TestCaseHungDeviceWhileMetricsStayFast(t *testing.T) {
	t.Parallel()
	s := newDevSite(t)
	ra := startE2E(t, s)
	t.Cleanup(func() { _ = s.faults.ClearAll() }) // before the agent stops: release hung calls
	ra.waitHealthy(t, "hsm-0")

	setFault(t, s, 0, pkcs11test.FaultHang, "")
	var slowest time.Duration
	scrapes := 0
	waitUntil(t, e2eWait, "an unresponsive case at the vendor desk", func() bool {
		t0 := time.Now()
		code, body, err := httpGet(ra.url + "/metrics")
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		scrapes++
		if err != nil || code != http.StatusOK || !strings.Contains(body, "hsm_up{") {
			t.Fatalf("/metrics while a token hangs: %d %v", code, err)
		}
		return len(s.desk.accepted("vendor")) > 0
	})
	t.Logf("%d scrapes while the token hung, slowest %v", scrapes, slowest)
	if slowest > 500*time.Millisecond {
		t.Errorf("a /metrics scrape took %v while a token hung (probe_timeout 2s); want < 500ms", slowest)
	}
	time.Sleep(time.Second)
	v := s.desk.accepted("vendor")
	if len(v) != 1 {
		t.Fatalf("want one vendor event, got:%s", describeCalls(v))
	}
	c := v[0].Event.Case
	if c.Kind != rma.KindHardware || c.Fault != rma.ClassUnresponsive || c.Severity != 2 {
		t.Errorf("want a hardware/unresponsive case of severity 2 (development), got %s/%s severity %d", c.Kind, c.Fault, c.Severity)
	}
	if n := len(ra.allCases(t)); n != 1 {
		t.Errorf("want one case, got %d", n)
	}
}

// TestCaseDeliveryRetries: the vendor desk answers 500 once then 200, the
// internal desk asks for Retry-After: 2 once. One case, one ticket per desk,
// one request per outbox attempt (the worker's backoff is the one retry
// layer), the same Idempotency-Key on every attempt, the wait honoured.
func TestCaseDeliveryRetries(t *testing.T) {
	t.Parallel()
	s := newDevSite(t)
	s.desk.setRespond(func(desk, _ string, attempt int) (int, http.Header) {
		switch {
		case desk == "vendor" && attempt < 1:
			return http.StatusInternalServerError, nil
		case desk == "internal" && attempt == 0:
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}}
		}
		return 0, nil
	})
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "both desks accept", func() bool {
		return len(s.desk.accepted("vendor")) == 1 && len(s.desk.accepted("internal")) == 1
	})
	time.Sleep(2 * time.Second)

	cases := ra.allCases(t)
	if len(cases) != 1 {
		t.Fatalf("want one case, got %+v", cases)
	}
	id := cases[0].ID
	vendor := s.desk.all("vendor")
	var statuses []int
	for _, c := range vendor {
		statuses = append(statuses, c.Status)
		if c.Key != id+":1" || c.Event.Case.ID != id || c.Event.Event != rma.EventOpened {
			t.Errorf("vendor attempt with key %q for case %s event %s; want key %s:1 every time", c.Key, c.Event.Case.ID, c.Event.Event, id)
		}
	}
	if !slices.Equal(statuses, []int{500, 200}) {
		t.Errorf("vendor attempts answered %v, want [500 200]:%s", statuses, describeCalls(vendor))
	}
	if len(s.desk.accepted("vendor")) != 1 {
		t.Errorf("want one vendor ticket:%s", describeCalls(vendor))
	}
	internal := s.desk.all("internal")
	if len(internal) != 2 || internal[0].Status != 429 || internal[1].Status != 200 || internal[0].Key != internal[1].Key {
		t.Fatalf("want 429 then 200 with the same key at the internal desk:%s", describeCalls(internal))
	}
	if gap := internal[1].At.Sub(internal[0].At); gap < 2*time.Second-50*time.Millisecond {
		t.Errorf("Retry-After: 2 not honoured: the resend came %v after the 429", gap)
	}
	// The store knows the vendor's ticket.
	d := s.caseDetail(t, id)
	if d.DeskRefs["vendor"] != s.desk.accepted("vendor")[0].Ticket {
		t.Errorf("case desk_refs %v, want vendor %s", d.DeskRefs, s.desk.accepted("vendor")[0].Ticket)
	}
	for _, dl := range d.Deliveries {
		if dl.Desk == "vendor" && (dl.State != rma.DeliveryDelivered || dl.Attempts != 2 || dl.TicketID == "") {
			t.Errorf("vendor delivery row: %+v; want delivered after 2 outbox attempts, one request each", dl)
		}
	}
}

// TestCaseDeskOutage keeps every desk down (503) while a fault opens and
// clears its case; once the desks answer, every event arrives exactly once
// and in order.
func TestCaseDeskOutage(t *testing.T) {
	t.Parallel()
	s := newDevSite(t)
	var mu sync.Mutex
	down := true
	s.desk.setRespond(func(string, string, int) (int, http.Header) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable, nil
		}
		return 0, nil
	})
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")

	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "the case opens and both desks were tried", func() bool {
		return len(ra.allCases(t)) == 1 && len(s.desk.all("vendor")) > 0 && len(s.desk.all("internal")) > 0
	})
	id := ra.allCases(t)[0].ID
	if err := s.faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, e2eWait, "case.cleared committed", func() bool {
		return slices.ContainsFunc(s.caseDetail(t, id).Events, func(e rma.Event) bool { return e.Type == rma.EventCleared })
	})
	// Stay down until the outbox itself has given up an attempt on each
	// desk (go-retryablehttp's quick retries exhausted, the failure recorded
	// and a later attempt scheduled): the events wait in the store.
	waitUntil(t, e2eWait, "a failed attempt recorded for both desks", func() bool {
		failed := map[string]bool{}
		for _, dl := range s.caseDetail(t, id).Deliveries {
			if dl.Seq == 1 && dl.State == rma.DeliveryPending && dl.Attempts >= 1 && dl.LastError != "" {
				failed[dl.Desk] = true
			}
		}
		return failed["vendor"] && failed["internal"]
	})
	if n := len(s.desk.accepted("")); n != 0 {
		t.Fatalf("a desk accepted during the outage (%d)", n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	waitUntil(t, e2eWait, "the outbox drains after the outage", func() bool {
		return len(s.desk.accepted("vendor")) >= 2 && len(s.desk.accepted("internal")) >= 2
	})
	time.Sleep(2 * time.Second)
	for _, desk := range []string{"vendor", "internal"} {
		acc := s.desk.accepted(desk)
		if len(acc) != 2 || acc[0].Key != id+":1" || acc[0].Event.Event != rma.EventOpened ||
			acc[1].Key != id+":2" || acc[1].Event.Event != rma.EventCleared {
			t.Errorf("%s: want case.opened (%s:1) then case.cleared (%s:2), each once:%s", desk, id, id, describeCalls(s.desk.all(desk)))
		}
		for _, c := range s.desk.all(desk) {
			if c.Dup {
				t.Errorf("%s: event %s delivered twice", desk, c.Key)
			}
		}
	}
	if p := s.desk.all("pager"); len(p) != outOfHoursPages(t, ra.allCases(t)) {
		t.Errorf("severity 2 paged inside the vendor's office hours (or not outside them):%s", describeCalls(p))
	}
	if len(ra.allCases(t)) != 1 {
		t.Error("the outage produced more than one case")
	}
}

// Secrets planted for the bundle test: distinctive, so a leak cannot
// hide in a timestamp.
const (
	plantedPIN   = "Pq7-31904-zzK"
	plantedToken = "apitok_7fQ2mZ9xLr4WcB8nV1sK3dT6"
)

// TestCaseBundleHasNoSecrets plants a device PIN (pin_file, in use by the
// self-test) and a desk API token (secret_file, also echoed by a
// diagnostics command and pasted into a module's env) and checks the bundle
// the vendor desk received: it verifies against its manifest and holds
// neither secret in any file, in plain, base64 or hex form.
func TestCaseBundleHasNoSecrets(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 1)
	tok := s.fleet.Tokens[0]
	cmd := exec.Command("pkcs11-tool", "--module", pkcs11test.SoftHSMLibrary, "--token-label", tok.Label,
		"--login", "--pin", "env:OLD_PIN", "--change-pin", "--new-pin", "env:NEW_PIN")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.fleet.ConfPath, "OLD_PIN="+tok.PIN, "NEW_PIN="+plantedPIN)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("change the token's PIN: %v\n%s", err, out)
	}
	pinFile, tokenFile := filepath.Join(s.dir, "hsm-0.pin"), filepath.Join(s.dir, "vendor.token")
	for f, v := range map[string]string{pinFile: plantedPIN + "\n", tokenFile: plantedToken + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.write(t, siteConfig{
		// A short selftest_interval: the first self-test's result can be
		// dropped when the token does not report in that poll (see the
		// report), and the default interval would hide it for 10 minutes.
		Settings: fmt.Sprintf("selftest_interval: 1s\ndiagnostics:\n  commands:\n    - {name: echo-secrets, command: [sh, -c, 'echo vendor api: $(cat %s); echo token=$(cat %s); echo pin $(cat %s)'], timeout: 5s}\n",
			tokenFile, tokenFile, pinFile),
		Module:  fmt.Sprintf("      VENDOR_API_TOKEN: %q\n", plantedToken),
		Devices: s.device(0, "hsm-0", fmt.Sprintf("environment: development, pin_file: %q, contract: {id: C-1, tier: premium, expires: 2030-01-31, region: emea}", pinFile)),
		Desks: fmt.Sprintf("  - {name: vendor, type: webhook, role: vendor, url: %q, secret_file: %q, phones: {emea: %q}}\n  - {name: internal, type: webhook, role: internal, url: %q}\n",
			s.desk.url("vendor"), tokenFile, vendorPhone, s.desk.url("internal")),
	}, testTimings)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	// The planted PIN is the real one: the logged-in self-test passes with it.
	waitUntil(t, 15*time.Second, "the login_sign self-test to pass with the planted PIN", func() bool {
		for _, c := range ra.devices(t)["hsm-0"].Checks {
			if c.Name == "login_sign" && c.OK {
				return true
			}
		}
		return false
	})

	setFault(t, s, 0, pkcs11test.FaultDeviceError, "C_GenerateRandom")
	waitUntil(t, e2eWait, "the vendor event", func() bool { return len(s.desk.accepted("vendor")) == 1 })
	call := s.desk.accepted("vendor")[0]
	ev := call.Event

	// The desk secret is in use: the body is signed with it.
	mac := hmac.New(sha256.New, []byte(plantedToken))
	mac.Write(call.Body)
	if got, want := call.Header.Get("X-Hsm-Agent-Signature"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}

	if ev.Bundle == nil || ev.Bundle.ContentBase64 == "" {
		t.Fatalf("the vendor event has no bundle content: %+v", ev.Bundle)
	}
	tgz, err := base64.StdEncoding.DecodeString(ev.Bundle.ContentBase64)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(tgz); hex.EncodeToString(sum[:]) != ev.Bundle.SHA256 || int64(len(tgz)) != ev.Bundle.Size {
		t.Errorf("bundle sha256/size in the event (%s, %d) do not match its content (%x, %d)", ev.Bundle.SHA256, ev.Bundle.Size, sum, len(tgz))
	}
	path := filepath.Join(t.TempDir(), ev.Bundle.Name)
	if err := os.WriteFile(path, tgz, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Verify(path)
	if err != nil {
		t.Fatalf("bundle.Verify on the bundle the desk received: %v", err)
	}
	if m.CaseID != ev.Case.ID || m.Serial != s.serial(0) || m.Device != "hsm-0" {
		t.Errorf("manifest names case %s device %s serial %s; want %s hsm-0 %s", m.CaseID, m.Device, m.Serial, ev.Case.ID, s.serial(0))
	}
	files := untar(t, tgz)
	for _, want := range []string{bundle.ManifestName, "case.json", "device.json", "history.json", "agent.log", "commands/echo-secrets.txt"} {
		if _, ok := files[want]; !ok {
			t.Errorf("bundle lacks %s (has %v)", want, slices.Sorted(maps.Keys(files)))
		}
	}
	// The command did print the secrets: they were scrubbed, not absent.
	if out := string(files["commands/echo-secrets.txt"]); !strings.Contains(out, "vendor api: "+bundle.Redacted) || !strings.Contains(out, "pin "+bundle.Redacted) {
		t.Errorf("commands/echo-secrets.txt should show the scrubbed secrets:\n%s", out)
	}
	scrubbed := false
	for _, r := range m.Redactions {
		if r.File == "commands/echo-secrets.txt" && r.Rule == bundle.RuleKnownSecret && r.Count > 0 {
			scrubbed = true
		}
	}
	if !scrubbed {
		t.Errorf("the manifest does not record the known-secret redactions: %+v", m.Redactions)
	}
	forms := func(secret string) []string {
		return []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)), hex.EncodeToString([]byte(secret))}
	}
	for name, b := range files {
		for _, secret := range []string{plantedPIN, plantedToken} {
			for _, f := range forms(secret) {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("bundle file %s contains a planted secret (%q)", name, f)
				}
			}
		}
	}
	// Nor in the tickets or the agent's own logs.
	for _, c := range s.desk.all("") {
		for _, secret := range []string{plantedPIN, plantedToken} {
			if bytes.Contains(c.Body, []byte(secret)) {
				t.Errorf("the %s event %s contains a planted secret", c.Desk, c.Key)
			}
		}
	}
	logs := ra.logs.String()
	for _, secret := range []string{plantedPIN, plantedToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("the agent logged a planted secret %q", secret)
		}
	}
}

// TestCaseCLI drives the case commands against the running agent's store:
// list, show, close (delivered to the desks as case.closed) and desk test.
func TestCaseCLI(t *testing.T) {
	t.Parallel()
	s := newDevSite(t)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "the case at both desks", func() bool {
		return len(s.desk.accepted("vendor")) == 1 && len(s.desk.accepted("internal")) == 1
	})

	code, out, errOut := cli(CLI.Cases, "--json", "--config", s.config)
	if code != 0 {
		t.Fatalf("cases --json: exit %d %s", code, errOut)
	}
	var list []rma.Case
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("cases --json: want one case, got %v\n%s", err, out)
	}
	id := list[0].ID
	if list[0].Serial != s.serial(0) || list[0].Fault != rma.ClassMissing || list[0].State != rma.StateOpen {
		t.Errorf("cases --json: %+v", list[0])
	}
	if code, out, _ := cli(CLI.Cases, "--config", s.config); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "missing") {
		t.Errorf("cases (table): exit %d\n%s", code, out)
	}

	show := func() map[string]any {
		t.Helper()
		code, out, errOut := cli(CLI.Cases, "show", id, "--json", "--config", s.config)
		if code != 0 {
			t.Fatalf("cases show %s --json: exit %d %s", id, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("cases show --json: %v\n%s", err, out)
		}
		return m
	}
	// The deliveries are recorded once the desks answered.
	waitUntil(t, 10*time.Second, "both deliveries recorded", func() bool {
		n := 0
		for _, d := range show()["deliveries"].([]any) {
			if d.(map[string]any)["state"] == rma.DeliveryDelivered {
				n++
			}
		}
		return n == 2
	})
	m := show()
	for _, k := range []string{"id", "dedup_key", "serial", "device", "kind", "fault", "severity", "tier", "flow", "state", "opened_at", "events", "deliveries"} {
		if _, ok := m[k]; !ok {
			t.Errorf("cases show --json lacks %q", k)
		}
	}
	if m["id"] != id || m["serial"] != s.serial(0) || m["device"] != "hsm-0" || m["kind"] != "hardware" || m["fault"] != "missing" ||
		m["severity"] != float64(2) || m["tier"] != "premium" || m["flow"] != "advance-replacement" || m["state"] != "open" ||
		m["dedup_key"] != rma.DedupKey(s.serial(0), rma.KindHardware, rma.ClassMissing) {
		t.Errorf("cases show --json: %v", m)
	}
	events := m["events"].([]any)
	if len(events) == 0 || events[0].(map[string]any)["type"] != rma.EventOpened {
		t.Errorf("events should start with case.opened: %v", events)
	}
	tickets := map[string]string{}
	for _, d := range m["deliveries"].([]any) {
		dm := d.(map[string]any)
		tickets[dm["desk"].(string)], _ = dm["ticket_id"].(string)
	}
	if tickets["vendor"] != s.desk.accepted("vendor")[0].Ticket || tickets["internal"] != s.desk.accepted("internal")[0].Ticket {
		t.Errorf("deliveries record tickets %v; the desks gave %s and %s", tickets, s.desk.accepted("vendor")[0].Ticket, s.desk.accepted("internal")[0].Ticket)
	}
	if code, out, _ := cli(CLI.Cases, "show", id, "--config", s.config); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "deliveries:") {
		t.Errorf("cases show (text): exit %d\n%s", code, out)
	}

	// Close it: state closed, case.closed (with the note) to both desks.
	code, out, errOut = cli(CLI.CaseAction, id, "close", "--note", "x", "--config", s.config)
	if code != 0 || !strings.Contains(out, "closed") {
		t.Fatalf("case %s close: exit %d\n%s%s", id, code, out, errOut)
	}
	m = show()
	if m["state"] != "closed" {
		t.Errorf("state after close: %v", m["state"])
	}
	closedEv := false
	for _, e := range m["events"].([]any) {
		em := e.(map[string]any)
		if em["type"] == rma.EventClosed && strings.HasPrefix(em["actor"].(string), "operator") && strings.Contains(fmt.Sprint(em["note"]), "x") {
			closedEv = true
		}
	}
	if !closedEv {
		t.Errorf("no case.closed event by an operator with the note: %v", m["events"])
	}
	waitUntil(t, e2eWait, "case.closed at both desks", func() bool {
		return len(s.desk.accepted("vendor")) == 2 && len(s.desk.accepted("internal")) == 2
	})
	for _, desk := range []string{"vendor", "internal"} {
		c := s.desk.accepted(desk)[1]
		if c.Event.Event != rma.EventClosed || c.Event.Case.ID != id || c.Event.Case.State != rma.StateClosed || c.Key != id+":2" {
			t.Errorf("%s: want case.closed for %s with key %s:2, got %s %s state %s key %s", desk, id, id, c.Event.Event, c.Event.Case.ID, c.Event.Case.State, c.Key)
		}
	}
	// A closed case takes no further action; an unknown ID is named.
	if code, _, errOut := cli(CLI.CaseAction, id, "close", "--config", s.config); code != 1 || !strings.Contains(errOut, "closed") {
		t.Errorf("closing twice: exit %d %s", code, errOut)
	}
	if code, _, errOut := cli(CLI.CaseAction, "no-such-case", "cancel", "--config", s.config); code != 1 || !strings.Contains(errOut, "no-such-case") {
		t.Errorf("unknown case: exit %d %s", code, errOut)
	}

	// desk test: a marked test event, and the desk's ticket in the output.
	before := len(s.desk.all("vendor"))
	code, out, errOut = cli(CLI.DeskTest, "test", "vendor", "--config", s.config)
	calls := s.desk.all("vendor")
	if code != 0 || len(calls) != before+1 {
		t.Fatalf("desk test vendor: exit %d\n%s%s", code, out, errOut)
	}
	tc := calls[len(calls)-1]
	if !tc.Event.Test || tc.Event.Event != rma.EventTest || !strings.Contains(out, fmt.Sprintf("%q", tc.Ticket)) {
		t.Errorf("desk test: event %s test=%v, output %q should report ticket %s", tc.Event.Event, tc.Event.Test, out, tc.Ticket)
	}
	if code, _, errOut := cli(CLI.DeskTest, "test", "nope", "--config", s.config); code != 1 || !strings.Contains(errOut, "vendor") {
		t.Errorf("desk test of an unknown desk: exit %d %s", code, errOut)
	}
}
