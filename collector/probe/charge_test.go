package probe

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// A real segfault in one token's C_GetTokenInfo, in a prober that has never
// seen the module: the token is Crashed with the signal, the call and the
// slot (not the Go runtime's register dump), and the others report.
func TestSegfaultIsChargedToTheTokenInFlight(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	victim := r.fleet.Tokens[1]
	r.set(victim.Serial, pkcs11test.FaultSegv, "")
	p := r.prober()
	res := r.poll(p, Request{})
	if res.ModuleError != "" {
		t.Errorf("ModuleError = %q, want none: one token crashed", res.ModuleError)
	}
	if len(res.Crashed) != 1 {
		t.Fatalf("Crashed = %+v, want the token in flight", res.Crashed)
	}
	c := res.Crashed[0]
	want := fmt.Sprintf("SIGSEGV in C_GetTokenInfo on slot %d; the probe worker crashed", c.SlotID)
	if c.Reason != want || c.Check != p11.CheckTokenInfo {
		t.Errorf("Crashed = %+v, want check token_info and reason %q", c, want)
	}
	r.requireAll(res, victim.Serial)
	if len(res.Tokens) != 2 {
		t.Errorf("tokens %v, want the two others", serials(res))
	}
}

// The library's start-up is charged to the module and each token to its
// own time: a slow C_Initialize followed by a slow (but not timed out)
// token, together past one probe_timeout, leaves everything reported.
func TestEachTokenHasItsOwnBudget(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	r.opts.Timeout = 2 * time.Second
	slow := r.fleet.Tokens[1]
	if err := r.faults.SetModule(pkcs11test.FaultSlow, "1500:C_Initialize"); err != nil {
		t.Fatal(err)
	}
	r.set(slow.Serial, pkcs11test.FaultSlow, "1200:C_GetTokenInfo")
	p := r.prober()
	res := r.poll(p, Request{})
	if res.ModuleError != "" || len(res.Unresponsive) != 0 {
		t.Fatalf("ModuleError %q, Unresponsive %+v; want every token charged only its own time", res.ModuleError, res.Unresponsive)
	}
	r.requireAll(res)
	if c := checkOf(tokenBySerial(res, slow.Serial), p11.CheckTokenInfo); c == nil || c.Duration < 1200*time.Millisecond {
		t.Errorf("slow token's token_info = %+v, want its 1.2 s", c)
	}
}

// A self-test is not charged for a slow neighbour: crypto11 walks the
// slots with C_GetTokenInfo to find its token, twice as long as one
// probe_timeout here, and the self-test still passes.
func TestSelfTestNotChargedForASlowNeighbour(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.opts.Timeout = 2 * time.Second
	first := r.poll(r.prober(), Request{})
	r.requireAll(first)
	// The self-test worker walks the slots in slot list order; make every
	// token but the last one slow, so the walk always passes one.
	var target p11.Token
	for i, tok := range first.Tokens {
		if i == len(first.Tokens)-1 {
			target = tok
			continue
		}
		r.set(tok.Serial, pkcs11test.FaultSlow, "1200:C_GetTokenInfo")
	}
	pinFile := t.TempDir() + "/pin"
	writePIN(t, pinFile, pkcs11test.DefaultPIN)
	p := r.prober()
	res := r.poll(p, Request{SelfTests: []SelfTest{{Serial: target.Serial, PINFile: pinFile}}})
	r.requireAll(res)
	if c := checkOf(tokenBySerial(res, target.Serial), p11.CheckLoginSign); c == nil || !c.OK {
		t.Errorf("login_sign of %s = %+v, want OK: the slow neighbour's time is its own", target.Serial, c)
	}
	if strings.Contains(r.logs.String(), "self-test did not finish") {
		t.Error("the self-test worker was killed at its deadline")
	}
}
