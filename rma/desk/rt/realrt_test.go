package rt_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/internal/testutil/realrt"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// uniqueSerial keeps this run's keys apart from every earlier run's tickets.
func uniqueSerial(prefix string) string {
	return prefix + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// rootDesk is the desk config of root:password at r.
func rootDesk(t *testing.T, r *realrt.Server) config.Desk {
	return config.Desk{URL: r.Base, Queue: "General", Username: "root", PasswordFile: writeFile(t, "rt.password", "password\n")}
}

// TestRealRT drives one real Request Tracker 5 (Debian's packages, on
// loopback): a case's whole life on its ticket, a restart, and desk test.
// Ten agents racing to open the same case: TestTenDaemonsOneRTTicket in
// agent/cmd/hsm-agent.
func TestRealRT(t *testing.T) {
	r := realrt.Start(t)
	t.Run("lifecycle", func(t *testing.T) { testRealLifecycle(t, r) })
	t.Run("desk test", func(t *testing.T) { testRealDeskTest(t, r) })
}

func testRealLifecycle(t *testing.T, r *realrt.Server) {
	ctx := context.Background()
	c := testCase(uniqueSerial("RTL"), 1)
	bundle := writeFile(t, "hsm-a-bundle.tar.gz", "diagnostics \x00\x01 bundle bytes")
	d := newDesk(t, rootDesk(t, r))

	id, _, err := d.Send(ctx, message(t, rma.EventOpened, 1, c, nil, bundle, false))
	if err != nil || id == "" {
		t.Fatalf("open: id %q, err %v", id, err)
	}
	var tk map[string]any
	r.MustGet(t, "ticket/"+id, nil, &tk)
	if fmt.Sprint(tk["Priority"]) != "100" {
		t.Errorf("severity 1 ticket has Priority %v, want 100", tk["Priority"])
	}
	if s := fmt.Sprint(tk["Subject"]); !strings.Contains(s, "[hsm:"+c.DedupKey+"]") {
		t.Errorf("subject %q lacks the dedup tag", s)
	}
	if got, ok := r.Attachment(t, id, "hsm-a-bundle.tar.gz"); !ok || string(got) != "diagnostics \x00\x01 bundle bytes" {
		t.Errorf("bundle attachment: found %v, content %q", ok, got)
	}

	// A later event is a comment, with the RMA request's facts.
	if got, _, err := d.Send(ctx, message(t, "case.confirmed", 2, c, confirmStep(), "", false)); err != nil || got != id {
		t.Fatalf("confirm: ticket %q (want %s), err %v", got, id, err)
	}
	if n := r.Transactions(t, id, "Comment"); n != 1 {
		t.Errorf("after one later event the ticket has %d comments, want 1", n)
	}

	// A restarted agent (a new desk, no local state) resends case.opened.
	d2 := newDesk(t, rootDesk(t, r))
	if got, _, err := d2.Send(ctx, message(t, rma.EventOpened, 1, c, nil, bundle, false)); err != nil || got != id {
		t.Fatalf("resend after restart: ticket %q (want %s), err %v", got, id, err)
	}
	if all := r.Tickets(t, c.DedupKey); len(all) != 1 {
		t.Errorf("after a restart the case has tickets %v, want exactly one", all)
	}

	// Closing the case resolves the ticket.
	if got, _, err := d2.Send(ctx, message(t, rma.EventClosed, 3, c, &rma.StepRecord{Event: "close", Actor: "operator:alice"}, "", false)); err != nil || got != id {
		t.Fatalf("close: ticket %q (want %s), err %v", got, id, err)
	}
	if all := r.Tickets(t, c.DedupKey); all[id] != "resolved" || len(all) != 1 {
		t.Errorf("after close the tickets are %v, want only %s, resolved", all, id)
	}
	if n := r.Transactions(t, id, "Comment"); n != 2 {
		t.Errorf("after close the ticket has %d comments, want 2", n)
	}
}

func testRealDeskTest(t *testing.T, r *realrt.Server) {
	ctx := context.Background()
	before := r.MaxID(t)
	if _, err := desk.Test(ctx, newDesk(t, rootDesk(t, r))); err != nil {
		t.Errorf("desk test with root: %v", err)
	}
	bad := rootDesk(t, r)
	bad.PasswordFile = writeFile(t, "wrong", "not-the-password\n")
	if _, err := desk.Test(ctx, newDesk(t, bad)); err == nil || !strings.Contains(err.Error(), "auth:") || strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("desk test with a wrong password: %v; want an auth error without the password", err)
	}
	noQueue := rootDesk(t, r)
	noQueue.Queue = "NoSuchQueue"
	if _, err := desk.Test(ctx, newDesk(t, noQueue)); err == nil || !strings.Contains(err.Error(), "queue:") {
		t.Errorf("desk test of a missing queue: %v; want a queue error", err)
	}
	if after := r.MaxID(t); after != before {
		t.Errorf("desk test created tickets %d..%d; it must only read", before+1, after)
	}
}
