package rt_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// rtServer is Debian's standalone Request Tracker 5 server.
const rtServer = "/usr/share/request-tracker5/libexec/rt-server"

// rtPackages is what installs it (.ci/run and scripts/install-deps.sh do).
const rtPackages = "request-tracker5 rt5-db-sqlite rt5-standalone"

// realRT is a Request Tracker 5 started on loopback for one test.
type realRT struct {
	base  string // http://127.0.0.1:PORT
	start int    // the highest ticket ID when the test began (the SQLite DB is shared by every run)
}

// startRT starts rt-server on a free loopback port and waits until REST2
// answers root:password. A missing RT fails the test: CI installs it.
func startRT(t *testing.T) *realRT {
	t.Helper()
	if _, err := os.Stat(rtServer); err != nil {
		t.Fatalf("Request Tracker 5 is not installed (%v): install it with "+
			"`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s` (scripts/install-deps.sh does)", err, rtPackages)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	var out bytes.Buffer
	cmd := exec.Command(rtServer, "--port", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", rtServer, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	r := &realRT{base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(3 * time.Minute) // generous: a loaded machine
	for {
		var q map[string]any
		if code := r.get(t, "queue/General", nil, &q); code == http.StatusOK {
			break
		}
		select {
		case <-exited:
			t.Fatalf("rt-server exited before answering: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rt-server on port %d did not answer REST2 within 3 minutes: %s", port, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.start = r.maxID(t)
	return r
}

// get GETs a REST2 path as root into into (when 200) and returns the status
// (0 when RT does not answer yet).
func (r *realRT) get(t *testing.T, path string, q url.Values, into any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.base+"/REST/2.0/"+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("root", "password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// mustGet is get that fails the test unless RT answers 200.
func (r *realRT) mustGet(t *testing.T, path string, q url.Values, into any) {
	t.Helper()
	if code := r.get(t, path, q, into); code != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, code)
	}
}

// items is a REST2 collection.
type items struct {
	Items []map[string]any `json:"items"`
}

// maxID is the highest ticket ID in RT.
func (r *realRT) maxID(t *testing.T) int {
	var c items
	r.mustGet(t, "tickets", url.Values{"query": {"id > 0"}, "orderby": {"id"}, "order": {"DESC"}, "per_page": {"1"}}, &c)
	if len(c.Items) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(fmt.Sprint(c.Items[0]["id"]))
	return n
}

// tickets returns ID -> Status of the tickets this test made for key.
func (r *realRT) tickets(t *testing.T, key string) map[string]string {
	var c items
	r.mustGet(t, "tickets", url.Values{"query": {fmt.Sprintf("id > %d AND Subject LIKE '[hsm:%s]'", r.start, key)},
		"fields": {"Status"}, "per_page": {"100"}}, &c)
	out := map[string]string{}
	for _, it := range c.Items {
		out[fmt.Sprint(it["id"])] = fmt.Sprint(it["Status"])
	}
	return out
}

// transactions counts the ticket's transactions of type typ.
func (r *realRT) transactions(t *testing.T, id, typ string) int {
	var c items
	r.mustGet(t, "ticket/"+id+"/history", url.Values{"fields": {"Type"}, "per_page": {"100"}}, &c)
	n := 0
	for _, it := range c.Items {
		if it["Type"] == typ {
			n++
		}
	}
	return n
}

// attachment returns the content of the ticket's attachment named name.
func (r *realRT) attachment(t *testing.T, id, name string) ([]byte, bool) {
	var c items
	r.mustGet(t, "ticket/"+id+"/attachments", url.Values{"fields": {"Filename"}, "per_page": {"100"}}, &c)
	for _, it := range c.Items {
		if it["Filename"] != name {
			continue
		}
		var a struct{ Content string }
		r.mustGet(t, "attachment/"+fmt.Sprint(it["id"]), nil, &a)
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(a.Content, "\n", ""))
		if err != nil {
			t.Fatalf("attachment %v: %v", it["id"], err)
		}
		return b, true
	}
	return nil, false
}

// uniqueSerial keeps this run's keys apart from every earlier run's tickets.
func uniqueSerial(prefix string) string {
	return prefix + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// rootDesk is the desk config of root:password at r.
func (r *realRT) rootDesk(t *testing.T) config.Desk {
	return config.Desk{URL: r.base, Queue: "General", Username: "root", PasswordFile: writeFile(t, "rt.password", "password\n")}
}

// TestRealRT drives one real Request Tracker 5 (Debian's packages, on
// loopback): a case's whole life on its ticket, a restart, ten agents
// racing to open the same case, and desk test.
func TestRealRT(t *testing.T) {
	r := startRT(t)
	t.Run("lifecycle", func(t *testing.T) { testRealLifecycle(t, r) })
	t.Run("ten agents open one ticket", func(t *testing.T) { testRealRace(t, r) })
	t.Run("desk test", func(t *testing.T) { testRealDeskTest(t, r) })
}

func testRealLifecycle(t *testing.T, r *realRT) {
	ctx := context.Background()
	c := testCase(uniqueSerial("RTL"), 1)
	bundle := writeFile(t, "hsm-a-bundle.tar.gz", "diagnostics \x00\x01 bundle bytes")
	d := newDesk(t, r.rootDesk(t))

	id, _, err := d.Send(ctx, message(t, rma.EventOpened, 1, c, nil, bundle, false))
	if err != nil || id == "" {
		t.Fatalf("open: id %q, err %v", id, err)
	}
	var tk map[string]any
	r.mustGet(t, "ticket/"+id, nil, &tk)
	if fmt.Sprint(tk["Priority"]) != "100" {
		t.Errorf("severity 1 ticket has Priority %v, want 100", tk["Priority"])
	}
	if s := fmt.Sprint(tk["Subject"]); !strings.Contains(s, "[hsm:"+c.DedupKey+"]") {
		t.Errorf("subject %q lacks the dedup tag", s)
	}
	if got, ok := r.attachment(t, id, "hsm-a-bundle.tar.gz"); !ok || string(got) != "diagnostics \x00\x01 bundle bytes" {
		t.Errorf("bundle attachment: found %v, content %q", ok, got)
	}

	// A later event is a comment, with the RMA request's facts.
	if got, _, err := d.Send(ctx, message(t, "case.confirmed", 2, c, confirmStep(), "", false)); err != nil || got != id {
		t.Fatalf("confirm: ticket %q (want %s), err %v", got, id, err)
	}
	if n := r.transactions(t, id, "Comment"); n != 1 {
		t.Errorf("after one later event the ticket has %d comments, want 1", n)
	}

	// A restarted agent (a new desk, no local state) resends case.opened.
	d2 := newDesk(t, r.rootDesk(t))
	if got, _, err := d2.Send(ctx, message(t, rma.EventOpened, 1, c, nil, bundle, false)); err != nil || got != id {
		t.Fatalf("resend after restart: ticket %q (want %s), err %v", got, id, err)
	}
	if all := r.tickets(t, c.DedupKey); len(all) != 1 {
		t.Errorf("after a restart the case has tickets %v, want exactly one", all)
	}

	// Closing the case resolves the ticket.
	if got, _, err := d2.Send(ctx, message(t, rma.EventClosed, 3, c, &rma.StepRecord{Event: "close", Actor: "operator:alice"}, "", false)); err != nil || got != id {
		t.Fatalf("close: ticket %q (want %s), err %v", got, id, err)
	}
	if all := r.tickets(t, c.DedupKey); all[id] != "resolved" || len(all) != 1 {
		t.Errorf("after close the tickets are %v, want only %s, resolved", all, id)
	}
	if n := r.transactions(t, id, "Comment"); n != 2 {
		t.Errorf("after close the ticket has %d comments, want 2", n)
	}
}

// testRealRace: ten desk instances (each what one agent process holds: its
// own client and no shared state) deliver the same case.opened at once;
// exactly one ticket stays open and every agent reports it.
func testRealRace(t *testing.T, r *realRT) {
	c := testCase(uniqueSerial("RTR"), 2)
	const agents = 10
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ids   [agents]string
		errs  [agents]error
	)
	for i := range agents {
		d := newDesk(t, r.rootDesk(t))
		m := message(t, rma.EventOpened, 1, c, nil, "", false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ids[i], _, errs[i] = d.Send(context.Background(), m)
		}()
	}
	close(start)
	wg.Wait()
	for i := range agents {
		if errs[i] != nil {
			t.Fatalf("agent %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("agent %d reports ticket %s, agent 0 ticket %s: all must agree", i, ids[i], ids[0])
		}
	}
	all := r.tickets(t, c.DedupKey)
	var open []string
	lowest := 0
	for id, st := range all {
		if st != "resolved" {
			open = append(open, id)
		}
		if n, _ := strconv.Atoi(id); lowest == 0 || n < lowest {
			lowest = n
		}
	}
	if len(open) != 1 || open[0] != ids[0] || open[0] != strconv.Itoa(lowest) {
		t.Errorf("ten agents left tickets %v (open %v, agents report %s): want exactly one open, the lowest ID", all, open, ids[0])
	}
	t.Logf("ten agents created %d ticket(s); %d resolved as duplicates of #%s", len(all), len(all)-1, ids[0])
	var tk map[string]any
	r.mustGet(t, "ticket/"+ids[0], nil, &tk)
	if fmt.Sprint(tk["Priority"]) != "75" {
		t.Errorf("severity 2 ticket has Priority %v, want 75", tk["Priority"])
	}
}

func testRealDeskTest(t *testing.T, r *realRT) {
	ctx := context.Background()
	before := r.maxID(t)
	if _, err := desk.Test(ctx, newDesk(t, r.rootDesk(t))); err != nil {
		t.Errorf("desk test with root: %v", err)
	}
	bad := r.rootDesk(t)
	bad.PasswordFile = writeFile(t, "wrong", "not-the-password\n")
	if _, err := desk.Test(ctx, newDesk(t, bad)); err == nil || !strings.Contains(err.Error(), "auth:") || strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("desk test with a wrong password: %v; want an auth error without the password", err)
	}
	noQueue := r.rootDesk(t)
	noQueue.Queue = "NoSuchQueue"
	if _, err := desk.Test(ctx, newDesk(t, noQueue)); err == nil || !strings.Contains(err.Error(), "queue:") {
		t.Errorf("desk test of a missing queue: %v; want a queue error", err)
	}
	if after := r.maxID(t); after != before {
		t.Errorf("desk test created tickets %d..%d; it must only read", before+1, after)
	}
}
