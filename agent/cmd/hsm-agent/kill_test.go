package main

// End-to-end tests of the case pipeline through the real binary: kill -9
// between commit and delivery, a state database that cannot be used, and
// `hsm-agent bundle` with and without a running daemon.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/bundle"
)

// ticketDesk is an httptest webhook desk serving /desk/{name}: one ticket
// per desk and Idempotency-Key (a resend gets the same ticket), every
// request recorded. With hold set, the first request is accepted (its
// ticket created) and then held open until release is closed.
type ticketDesk struct {
	srv *httptest.Server

	mu      sync.Mutex
	calls   []ticketCall
	tickets map[string]string
	n       int

	hold    bool
	held    chan ticketCall // the held request, once
	release chan struct{}
}

type ticketCall struct {
	Desk, Key, Ticket string
	Dup               bool
	Event             rma.DeskEvent
}

func newTicketDesk(t *testing.T, hold bool) *ticketDesk {
	d := &ticketDesk{tickets: map[string]string{}, hold: hold, held: make(chan ticketCall, 1), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /desk/{name}", d.serve)
	d.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		d.unblock()
		d.srv.Close()
	})
	return d
}

func (d *ticketDesk) url(name string) string { return d.srv.URL + "/desk/" + name }

func (d *ticketDesk) unblock() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.release:
	default:
		close(d.release)
	}
}

func (d *ticketDesk) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := ticketCall{Desk: r.PathValue("name"), Key: r.Header.Get("Idempotency-Key")}
	_ = json.Unmarshal(body, &c.Event)
	d.mu.Lock()
	id := c.Desk + "\x00" + c.Key
	ticket, dup := d.tickets[id]
	if !dup {
		d.n++
		ticket = fmt.Sprintf("%s-%d", strings.ToUpper(c.Desk), d.n)
		d.tickets[id] = ticket
	}
	c.Ticket, c.Dup = ticket, dup
	d.calls = append(d.calls, c)
	hold := d.hold
	d.hold = false
	d.mu.Unlock()
	if hold {
		// The desk has the event and made its ticket; the answer is held
		// back until the test has killed the agent.
		d.held <- c
		select {
		case <-d.release:
		case <-r.Context().Done():
			<-d.release
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"ticket_id\": %q}\n", ticket)
}

func (d *ticketDesk) all(desk string) []ticketCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []ticketCall
	for _, c := range d.calls {
		if c.Desk == desk {
			out = append(out, c)
		}
	}
	return out
}

// ticketCount is how many tickets the desk created.
func (d *ticketDesk) ticketCount(desk string) int {
	n := 0
	for _, c := range d.all(desk) {
		if !c.Dup {
			n++
		}
	}
	return n
}

// caseSite writes a config for a fleet behind the fault module with a
// vendor and an internal webhook desk (none when desk is nil); devices are
// development (severity 2).
func caseSite(t *testing.T, tokens int, listen string, desk *ticketDesk, extra string) (cfgFile string, fleet *pkcs11test.Fleet, faults *pkcs11test.Faults) {
	t.Helper()
	dir := t.TempDir()
	fleet = pkcs11testtb.NewFleet(t, tokens)
	faults, err := pkcs11test.NewFaults(filepath.Join(dir, "faults"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %q\nlisten: %q\npoll_interval: 300ms\nrecheck_interval: 100ms\nconfirm_polls: 3\nprobe_timeout: 2s\n%s", filepath.Join(dir, "state"), listen, extra)
	fmt.Fprintf(&b, "modules:\n  - name: soft\n    library: %q\n    env:\n", pkcs11testtb.FaultModule(t))
	fmt.Fprintf(&b, "      SOFTHSM2_CONF: %q\n", fleet.ConfPath)
	for k, v := range faults.Env() {
		fmt.Fprintf(&b, "      %s: %q\n", k, v)
	}
	fmt.Fprintf(&b, "devices:\n")
	for i, tok := range fleet.Tokens {
		fmt.Fprintf(&b, "  - {name: hsm-%d, serial: %q, module: soft, environment: development, contract: {id: C-%d, tier: premium, expires: 2030-01-31, region: emea}}\n", i, tok.Serial, i)
	}
	if desk != nil {
		fmt.Fprintf(&b, "desks:\n  - {name: vendor, type: webhook, role: vendor, url: %q, timeout: 60s, phones: {emea: \"+44 20 0000 0000\"}}\n", desk.url("vendor"))
		fmt.Fprintf(&b, "  - {name: internal, type: webhook, role: internal, url: %q}\n", desk.url("internal"))
	}
	cfgFile = filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgFile, fleet, faults
}

// daemon is one `hsm-agent run` process.
type daemon struct {
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	mu     *sync.Mutex
	exited chan struct{} // closed when the process has exited
	err    error         // how it exited; read it after exited is closed
}

func startDaemon(t *testing.T, cfgFile string) *daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(binary, "run", "--config", cfgFile))
}

// startDaemonCmd starts cmd, an `hsm-agent run` (possibly behind an exec
// wrapper), as a daemon stopped at the end of the test.
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{cmd: cmd, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, exited: make(chan struct{})}
	d.cmd.Stderr = lockedWriter{d.mu, d.logs}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("daemon (pid %d) logs:\n%s", d.cmd.Process.Pid, d.String())
		}
	})
	return d
}

func (d *daemon) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// casesJSON runs `hsm-agent cases --all --json`.
func casesJSON(t *testing.T, cfgFile string) []rma.Case {
	t.Helper()
	code, out, errOut := hsmAgent(t, "cases", "--all", "--json", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("cases --json: exit %d %s", code, errOut)
	}
	var cases []rma.Case
	if err := json.Unmarshal([]byte(out), &cases); err != nil {
		t.Fatalf("cases --json: %v\n%s", err, out)
	}
	return cases
}

// TestKillBetweenCommitAndDelivery SIGKILLs the daemon while the vendor
// desk holds the first delivery open (the desk has made its ticket, the
// agent has not seen the answer). After a restart the event is sent again
// with the same Idempotency-Key: one ticket, one case.
func TestKillBetweenCommitAndDelivery(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, true)
	listen := freePort(t)
	cfgFile, fleet, faults := caseSite(t, 1, listen, desk, "")
	first := startDaemon(t, cfgFile)
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, fleet.Tokens[0].Serial), 20*time.Second)

	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	var held ticketCall
	select {
	case held = <-desk.held:
	case <-time.After(30 * time.Second):
		t.Fatalf("no delivery reached the desk within 30s")
	}
	// The case is committed: the CLI, a separate process, sees it.
	cases := casesJSON(t, cfgFile)
	if len(cases) != 1 || held.Event.Case.ID != cases[0].ID {
		t.Fatalf("want the held event's case %s as the only case, got %+v", held.Event.Case.ID, cases)
	}
	id := cases[0].ID
	if held.Key != id+":1" {
		t.Errorf("held request key %q, want %s:1", held.Key, id)
	}

	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not die from SIGKILL")
	}
	desk.unblock() // the answer goes nowhere: the agent that asked is gone

	startDaemon(t, cfgFile)
	waitUntilT(t, 30*time.Second, "the resend after the restart", func() bool {
		for _, c := range desk.all(held.Desk) {
			if c.Dup {
				return true
			}
		}
		return false
	})
	// Let the restarted agent poll a while: the fault is still there.
	time.Sleep(2 * time.Second)

	calls := desk.all(held.Desk)
	for _, c := range calls {
		if c.Key != held.Key || c.Ticket != held.Ticket {
			t.Errorf("%s desk: request key %q ticket %s; want every attempt with key %s and ticket %s", held.Desk, c.Key, c.Ticket, held.Key, held.Ticket)
		}
	}
	for _, name := range []string{"vendor", "internal"} {
		if n := desk.ticketCount(name); n != 1 {
			t.Errorf("%s desk has %d tickets, want exactly 1: %+v", name, n, desk.all(name))
		}
	}
	cases = casesJSON(t, cfgFile)
	if len(cases) != 1 || cases[0].ID != id {
		t.Fatalf("after the restart: want exactly case %s, got %+v", id, cases)
	}
	code, out, errOut := hsmAgent(t, "cases", "show", id, "--json", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("cases show: exit %d %s", code, errOut)
	}
	var detail struct {
		Events     []rma.Event    `json:"events"`
		Deliveries []rma.Delivery `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(out), &detail); err != nil {
		t.Fatal(err)
	}
	for _, dl := range detail.Deliveries {
		if dl.State != rma.DeliveryDelivered || dl.IdempotencyKey != id+":1" {
			t.Errorf("delivery %s %s: state %s key %s, want delivered with %s:1", dl.Desk, dl.CaseID, dl.State, dl.IdempotencyKey, id)
		}
		if dl.Desk == held.Desk && dl.TicketID != held.Ticket {
			t.Errorf("%s delivery ticket %q, want %s", dl.Desk, dl.TicketID, held.Ticket)
		}
	}
	opened := 0
	for _, e := range detail.Events {
		if e.Type == rma.EventOpened || e.Type == rma.EventReopened {
			opened++
		}
	}
	if opened != 1 || len(detail.Deliveries) != 2 {
		t.Errorf("want one case.opened and two outbox rows, got %d opened, %d rows", opened, len(detail.Deliveries))
	}
}

func waitUntilT(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runFails runs `hsm-agent run` and expects it to exit non-zero within 15s.
func runFails(t *testing.T, cfgFile string) (string, time.Duration) {
	t.Helper()
	cmd := exec.Command(binary, "run", "--config", cfgFile)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("hsm-agent run exited 0 with an unusable state DB:\n%s", errOut.String())
		}
		return errOut.String(), time.Since(start)
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("hsm-agent run kept running with an unusable state DB:\n%s", errOut.String())
	}
	return "", 0
}

// TestCorruptStateDBRefusesToStart: random bytes in the state DB (and a
// file with an SQLite header over garbage) make `run` exit non-zero at
// once, naming the file and the fix, without touching it; a state_dir
// that is a regular file is a clear error too.
func TestCorruptStateDBRefusesToStart(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, false)
	cfgFile, _, _ := caseSite(t, 1, freePort(t), desk, "")
	state := filepath.Join(filepath.Dir(cfgFile), "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(state, "hsm-agent.db")
	garbage := make([]byte, 64<<10)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}
	withHeader := append([]byte("SQLite format 3\x00"), garbage[16:]...)
	for name, content := range map[string][]byte{"random bytes": garbage, "SQLite header over garbage": withHeader} {
		if err := os.WriteFile(db, content, 0o600); err != nil {
			t.Fatal(err)
		}
		for run := 1; run <= 2; run++ { // a restart loop must not change anything either
			errOut, took := runFails(t, cfgFile)
			t.Logf("%s, run %d: exited after %v:\n%s", name, run, took.Round(time.Millisecond), errOut)
			if took > 10*time.Second {
				t.Errorf("%s: took %v to give up, want promptly", name, took)
			}
			if !strings.Contains(errOut, db) || !strings.Contains(errOut, "corrupt") || !strings.Contains(errOut, "aside") || !strings.Contains(errOut, "backup") {
				t.Errorf("%s: the error should name %s, say it is corrupt and what to do:\n%s", name, db, errOut)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine ") {
				t.Errorf("%s: crashed instead of a clear error:\n%s", name, errOut)
			}
			got, err := os.ReadFile(db)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("%s: the state DB was changed (%v)", name, err)
			}
		}
		if casesCode, _, casesErr := hsmAgent(t, "cases", "--config", cfgFile); casesCode == 0 || !strings.Contains(casesErr, db) {
			t.Errorf("%s: `cases` on a corrupt DB: exit %d %s", name, casesCode, casesErr)
		}
	}
	entries, _ := os.ReadDir(state)
	for _, e := range entries {
		if e.Name() != "hsm-agent.db" {
			t.Logf("note: state_dir also holds %s after the failed starts", e.Name())
		}
	}

	// state_dir is a regular file.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut, _ := runFails(t, cfgFile)
	t.Logf("state_dir is a file:\n%s", errOut)
	if !strings.Contains(errOut, state) || !strings.Contains(errOut, "state_dir") || !strings.Contains(errOut, "not a directory") {
		t.Errorf("a state_dir that is a file: the error should name %s and the state_dir setting:\n%s", state, errOut)
	}
	if got, err := os.ReadFile(state); err != nil || string(got) != "not a directory\n" {
		t.Errorf("the file at state_dir was changed (%v)", err)
	}
}

// TestBundleCommand runs `hsm-agent bundle SERIAL -o FILE` against a
// running daemon and, once it stopped, on its own (one poll).
func TestBundleCommand(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, false)
	listen := freePort(t)
	cfgFile, fleet, _ := caseSite(t, 2, listen, desk, "")
	serial := fleet.Tokens[1].Serial
	d := startDaemon(t, cfgFile)
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-1",serial=%q} 1`, serial), 20*time.Second)

	check := func(how, out string) bundle.Manifest {
		t.Helper()
		m, err := bundle.Verify(out)
		if err != nil {
			t.Fatalf("%s: bundle.Verify(%s): %v", how, out, err)
		}
		if m.Serial != serial || m.Device != "hsm-1" || m.CaseID != "" {
			t.Errorf("%s: manifest for %s/%s case %q, want hsm-1/%s and no case", how, m.Device, m.Serial, m.CaseID, serial)
		}
		return m
	}
	out := filepath.Join(t.TempDir(), "with-daemon.tar.gz")
	code, stdout, errOut := hsmAgent(t, "bundle", serial, "-o", out, "--config", cfgFile)
	if code != 0 || strings.TrimSpace(stdout) != out {
		t.Fatalf("bundle with a daemon: exit %d\n%s%s", code, stdout, errOut)
	}
	if strings.Contains(errOut, "no running agent answered") {
		t.Errorf("bundle did not use the running daemon: %s", errOut)
	}
	check("with the daemon", out)
	if !strings.Contains(d.String(), "on-demand bundle built") {
		t.Error("the daemon did not build the bundle")
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
	out2 := filepath.Join(t.TempDir(), "alone.tar.gz")
	code, stdout, errOut = hsmAgent(t, "bundle", serial, "-o", out2, "--config", cfgFile)
	if code != 0 || strings.TrimSpace(stdout) != out2 || !strings.Contains(errOut, "polling once myself") {
		t.Fatalf("bundle without a daemon: exit %d\n%s%s", code, stdout, errOut)
	}
	check("without the daemon", out2)

	if code, _, errOut := hsmAgent(t, "bundle", "no-such-serial", "--config", cfgFile); code == 0 || !strings.Contains(errOut, "no-such-serial") {
		t.Errorf("bundle of an unknown serial: exit %d %s", code, errOut)
	}
}
