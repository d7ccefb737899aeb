package probe

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

func writePIN(t *testing.T, path, pin string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSelfTestLogsInSignsAndRespectsInterval(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.opts.SelftestInterval = time.Hour
	tok := r.fleet.Tokens[1]
	pinFile := filepath.Join(t.TempDir(), "pin")
	writePIN(t, pinFile, tok.PIN)
	req := Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}}
	p := r.prober()

	res := r.poll(p, req)
	r.requireAll(res)
	c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
	if c == nil || !c.OK || c.Duration <= 0 {
		t.Fatalf("login_sign = %+v, want OK with a duration", c)
	}
	if n := r.logs.count("created the self-test key pair"); n != 1 {
		t.Errorf("key created %d times on first use, want 1; logs:\n%s", n, r.logs)
	}
	if other := checkOf(tokenBySerial(res, r.fleet.Tokens[0].Serial), p11.CheckLoginSign); other != nil {
		t.Errorf("token without a PIN file got login_sign %+v", other)
	}

	// Within the interval: no self-test.
	res = r.poll(p, req)
	if c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign); c != nil {
		t.Errorf("second poll within selftest_interval ran login_sign: %+v", c)
	}

	// A new prober (interval state gone) finds the existing key.
	p2 := r.prober()
	res = r.poll(p2, req)
	if c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign); c == nil || !c.OK {
		t.Errorf("login_sign with the existing key = %+v, want OK", c)
	}
	if n := r.logs.count("created the self-test key pair"); n != 1 {
		t.Errorf("key created %d times, want once (the second run finds it)", n)
	}
}

func TestWrongPINIsNotRetriedUntilFileChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.SelftestInterval = 1 // due at every poll
	tok := r.fleet.Tokens[0]
	const wrong = "wrong-PIN-7391"
	pinFile := filepath.Join(t.TempDir(), "pin")
	writePIN(t, pinFile, wrong)
	req := Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}}
	p := r.prober()

	res := r.poll(p, req)
	c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
	if c == nil || c.OK || c.Error != "CKR_PIN_INCORRECT" || c.NotRun != "" {
		t.Fatalf("login_sign = %+v, want a login attempt refused with CKR_PIN_INCORRECT", c)
	}
	starts := r.logs.count("worker_mode=selftest")

	for i := 0; i < 2; i++ {
		res = r.poll(p, req)
		c = checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
		if c == nil || c.Error != "CKR_PIN_INCORRECT" || c.NotRun == "" || c.Duration != 0 {
			t.Errorf("poll %d after the refusal: login_sign = %+v, want the refusal standing, not run", i, c)
		}
	}
	if n := r.logs.count("worker_mode=selftest"); n != starts {
		t.Errorf("self-test workers ran again after the refusal (log lines %d -> %d)", starts, n)
	}

	// The operator fixes the file: the self-test runs again and passes.
	writePIN(t, pinFile, tok.PIN)
	res = r.poll(p, req)
	if c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign); c == nil || !c.OK {
		t.Errorf("after the PIN file changed: login_sign = %+v, want OK", c)
	}

	// The PIN never shows in logs or results.
	b, _ := json.Marshal(res)
	if strings.Contains(r.logs.String(), wrong) || strings.Contains(string(b), wrong) {
		t.Errorf("the PIN %q appears in logs or results", wrong)
	}
}

func TestLockedOrFinalTryTokenIsNeverLoggedInto(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{p11.FlagUserPINLocked, p11.FlagUserPINFinalTry} {
		t.Run(flag, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, 1)
			r.opts.SelftestInterval = 1
			tok := r.fleet.Tokens[0]
			r.set(tok.Serial, pkcs11test.FaultFlags, flag)
			// A wrong PIN: any login attempt would show as CKR_PIN_INCORRECT.
			pinFile := filepath.Join(t.TempDir(), "pin")
			writePIN(t, pinFile, "not-the-pin")
			req := Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}}
			p := r.prober()

			// Self-tests run after the token probe, which has just read
			// the flags: no self-test worker starts, in the first poll
			// either.
			for _, poll := range []string{"first", "second"} {
				res := r.poll(p, req)
				c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
				if c == nil || c.Error != "" || !strings.Contains(c.NotRun, flag) {
					t.Errorf("%s poll: login_sign = %+v, want not run because of %s", poll, c, flag)
				}
				if n := r.logs.count("worker_mode=selftest"); n != 0 {
					t.Errorf("%s poll: a self-test worker ran although the flags had %s", poll, flag)
				}
			}
		})
	}
}

func TestUnreadablePINFileIsReported(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	tok := r.fleet.Tokens[0]
	missing := filepath.Join(t.TempDir(), "absent")
	p := r.prober()
	res := r.poll(p, Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: missing}}})
	c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
	if c == nil || c.OK || !strings.Contains(c.NotRun, missing) {
		t.Errorf("login_sign = %+v, want not run naming %s", c, missing)
	}
}

// crypto11 gives up at the first slot whose C_GetTokenInfo fails; a broken
// neighbour must not count as this token's self-test failure.
func TestSelfTestPastABrokenNeighbourIsNotRun(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	broken, tok := first.Tokens[0], first.Tokens[1]
	r.set(broken.Serial, pkcs11test.FaultDeviceError, "C_GetTokenInfo")
	pinFile := filepath.Join(t.TempDir(), "pin")
	writePIN(t, pinFile, pkcs11test.DefaultPIN)

	res := r.poll(p, Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}})
	c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
	if c == nil || c.Error != "" || !strings.Contains(c.NotRun, "CKR_DEVICE_ERROR") {
		t.Errorf("login_sign = %+v, want not run because slot %d fails", c, broken.SlotID)
	}
}

// TestSelfTestWaitsWhileATokenHangs: in a poll in which a token hung, a due
// self-test is not run (and says why); the next poll without a hang runs it.
func TestSelfTestWaitsWhileATokenHangs(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	r.opts.Timeout = time.Second
	tok, hung := r.fleet.Tokens[0], r.fleet.Tokens[1]
	pinFile := filepath.Join(t.TempDir(), "pin")
	writePIN(t, pinFile, tok.PIN)
	req := Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}}
	p := r.prober()
	r.requireAll(r.poll(p, Request{}))

	r.set(hung.Serial, pkcs11test.FaultHang, "C_GenerateRandom")
	res := r.poll(p, req)
	if len(res.Unresponsive) != 1 {
		t.Fatalf("Unresponsive = %+v, want the hung token %s", res.Unresponsive, hung.Serial)
	}
	c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign)
	if c == nil || c.OK || c.Error != "" || !strings.Contains(c.NotRun, "hung or crashed in this poll") {
		t.Fatalf("login_sign in a poll with a hang = %+v, want not run because of the hang", c)
	}
	r.clear()
	res = r.poll(p, req) // no hang any more
	if c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign); c == nil || !c.OK {
		t.Errorf("login_sign after a poll without a hang = %+v, want OK", c)
	}
}

// A self-test that failed (not a refused PIN) runs again at the next fresh
// poll, a confirmation recheck, instead of standing for selftest_interval:
// one spurious failure must not become a confirmed fault (level 1).
func TestFailedSelfTestIsRecheckedOnFreshPoll(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.SelftestInterval = time.Hour
	tok := r.fleet.Tokens[0]
	pinFile := filepath.Join(t.TempDir(), "pin")
	writePIN(t, pinFile, tok.PIN)
	req := Request{SelfTests: []SelfTest{{Serial: tok.Serial, PINFile: pinFile}}}
	p := r.prober()

	if err := r.faults.Set(tok.Serial, pkcs11test.FaultDeviceError, "C_Login"); err != nil {
		t.Fatal(err)
	}
	res := r.poll(p, req)
	if c := checkOf(tokenBySerial(res, tok.Serial), p11.CheckLoginSign); c == nil || c.OK || c.Error != "CKR_DEVICE_ERROR" {
		t.Fatalf("login_sign = %+v, want a failure with CKR_DEVICE_ERROR", c)
	}
	if err := r.faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	// A warm poll within the interval does not run it again...
	if c := checkOf(tokenBySerial(r.poll(p, req), tok.Serial), p11.CheckLoginSign); c != nil {
		t.Errorf("a warm poll within selftest_interval ran login_sign: %+v", c)
	}
	// ...a fresh one does, and the failure is gone.
	fresh := req
	fresh.Fresh = true
	c := checkOf(tokenBySerial(r.poll(p, fresh), tok.Serial), p11.CheckLoginSign)
	if c == nil || !c.OK {
		t.Fatalf("login_sign on the fresh poll = %+v, want it run again and OK", c)
	}
	// Passed: it stands for the interval again.
	if c := checkOf(tokenBySerial(r.poll(p, fresh), tok.Serial), p11.CheckLoginSign); c != nil {
		t.Errorf("a passed self-test ran again within selftest_interval: %+v", c)
	}
}
