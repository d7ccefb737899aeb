package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// gone waits until process pid no longer exists (killed and reaped).
func gone(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	t.Errorf("worker process %d still exists after the poll", pid)
}

func TestHangMarksTokenUnresponsiveAndReportsTheRest(t *testing.T) {
	t.Parallel()
	r := newRig(t, 5)
	r.opts.Timeout = time.Second
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	hung := first.Tokens[2] // in the middle of the slot list
	pid := p.w.cmd.Process.Pid
	r.set(hung.Serial, pkcs11test.FaultHang, "C_GenerateRandom")

	res := r.poll(p, Request{})
	if res.Duration > r.opts.Timeout+time.Second {
		t.Errorf("poll took %s, want the hung token marked within Timeout+1s (%s)", res.Duration, r.opts.Timeout+time.Second)
	}
	want := Unresponsive{SlotID: hung.SlotID, Serial: hung.Serial, Check: p11.CheckRandom}
	if len(res.Unresponsive) != 1 || res.Unresponsive[0] != want {
		t.Fatalf("Unresponsive = %+v, want [%+v]", res.Unresponsive, want)
	}
	if res.ModuleError != "" {
		t.Errorf("ModuleError = %q, want none: the other tokens were probed", res.ModuleError)
	}
	r.requireAll(res, hung.Serial)
	if tokenBySerial(res, hung.Serial) != nil {
		t.Errorf("hung token %s reported as a token too", hung.Serial)
	}
	if len(res.Tokens) != 4 {
		t.Errorf("%d tokens reported, want 4 (no duplicates): %v", len(res.Tokens), serials(res))
	}
	gone(t, pid) // the hung worker was killed, not left behind

	// Still hung: the next poll again marks it and reports the others.
	res = r.poll(p, Request{})
	if len(res.Unresponsive) != 1 || res.Unresponsive[0].Serial != hung.Serial {
		t.Errorf("second poll: Unresponsive = %+v, want %s", res.Unresponsive, hung.Serial)
	}
	r.requireAll(res, hung.Serial)

	r.clear()
	res = r.poll(p, Request{})
	if len(res.Unresponsive) != 0 || res.ModuleError != "" {
		t.Errorf("after clearing: Unresponsive %+v, ModuleError %q", res.Unresponsive, res.ModuleError)
	}
	r.requireAll(res)
}

func TestHangInTokenInfoUsesSerialSeenBefore(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	r.opts.Timeout = time.Second
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	hung := first.Tokens[0]
	r.set(hung.Serial, pkcs11test.FaultHang, "") // every call, C_GetTokenInfo first

	res := r.poll(p, Request{})
	want := Unresponsive{SlotID: hung.SlotID, Serial: hung.Serial, Check: p11.CheckTokenInfo}
	if len(res.Unresponsive) != 1 || res.Unresponsive[0] != want {
		t.Fatalf("Unresponsive = %+v, want [%+v] (serial from the earlier poll)", res.Unresponsive, want)
	}
	r.requireAll(res, hung.Serial)
	if res.Duration > r.opts.Timeout+time.Second {
		t.Errorf("poll took %s, want within Timeout+1s", res.Duration)
	}
}

func TestHangBeforeAnySerialIsKnown(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	r.opts.Timeout = time.Second
	hung := r.fleet.Tokens[1]
	r.set(hung.Serial, pkcs11test.FaultHang, "")
	p := r.prober()

	res := r.poll(p, Request{})
	if len(res.Unresponsive) != 1 || res.Unresponsive[0].Serial != "" || res.Unresponsive[0].Check != p11.CheckTokenInfo {
		t.Fatalf("Unresponsive = %+v, want one token hung in token_info with no serial known", res.Unresponsive)
	}
	r.requireAll(res, hung.Serial)
	if len(res.Tokens) != 2 {
		t.Errorf("%d tokens, want 2: %v", len(res.Tokens), serials(res))
	}
}

func TestTwoHungTokensStayWithinTwiceTheTimeout(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4)
	r.opts.Timeout = time.Second
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	a, b := first.Tokens[1].Serial, first.Tokens[3].Serial
	r.set(a, pkcs11test.FaultHang, "C_OpenSession")
	r.set(b, pkcs11test.FaultHang, "C_GenerateRandom")

	res := r.poll(p, Request{})
	if res.Duration > 2*r.opts.Timeout+time.Second {
		t.Errorf("poll took %s, want at most 2 x Timeout (+ slack)", res.Duration)
	}
	got := map[string]string{}
	for _, u := range res.Unresponsive {
		got[u.Serial] = u.Check
	}
	if got[a] != p11.CheckSessionOpen || got[b] != p11.CheckRandom || len(got) != 2 {
		t.Errorf("Unresponsive = %+v, want %s in session_open and %s in random", res.Unresponsive, a, b)
	}
	r.requireAll(res, a, b)
	if res.ModuleError != "" {
		t.Errorf("ModuleError = %q: every slot was probed", res.ModuleError)
	}
}

func TestHangBudgetUsedUpIsModuleError(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	r.opts.Timeout = time.Second
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	r.set(first.Tokens[0].Serial, pkcs11test.FaultHang, "")
	r.set(first.Tokens[1].Serial, pkcs11test.FaultHang, "")

	res := r.poll(p, Request{})
	if len(res.Unresponsive) != 2 {
		t.Errorf("Unresponsive = %+v, want the two hung tokens", res.Unresponsive)
	}
	if !strings.Contains(res.ModuleError, "budget") || !strings.Contains(res.ModuleError, fmt.Sprint(first.Tokens[2].SlotID)) {
		t.Errorf("ModuleError = %q, want the used-up budget and the slot not probed", res.ModuleError)
	}
	if res.Duration > 2*r.opts.Timeout+time.Second {
		t.Errorf("poll took %s, want at most 2 x Timeout (+ slack)", res.Duration)
	}
}

func TestModuleWideHangIsModuleError(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.opts.Timeout = 500 * time.Millisecond
	if err := r.faults.SetModule(pkcs11test.FaultHang, "C_GetSlotList"); err != nil {
		t.Fatal(err)
	}
	p := r.prober()
	res := r.poll(p, Request{})
	if !strings.Contains(res.ModuleError, "no answer") || len(res.Unresponsive) != 0 {
		t.Errorf("ModuleError %q, Unresponsive %+v; want a module error and no token blamed", res.ModuleError, res.Unresponsive)
	}
	r.clear()
	r.requireAll(r.poll(p, Request{}))
}

func TestCancelledPollKillsWorker(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.set(r.fleet.Tokens[0].Serial, pkcs11test.FaultHang, "")
	p := r.prober()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res := p.Poll(ctx, Request{})
	if !strings.Contains(res.ModuleError, "cancelled") {
		t.Errorf("ModuleError = %q, want cancelled", res.ModuleError)
	}
	if res.Duration > 5*time.Second {
		t.Errorf("cancelled poll took %s", res.Duration)
	}
}

func TestCloseStopsWorker(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	p := r.prober()
	r.requireAll(r.poll(p, Request{}))
	pid := p.w.cmd.Process.Pid
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	gone(t, pid)
	if res := r.poll(p, Request{}); res.ModuleError == "" {
		t.Error("Poll after Close: no ModuleError")
	}
}
