package probe

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

func TestPollReportsEveryToken(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	r.opts.Library = pkcs11test.SoftHSMLibrary // the real library, no wrapper
	p := r.prober()

	res := r.poll(p, Request{})
	if res.ModuleError != "" || len(res.Unresponsive) != 0 {
		t.Fatalf("module error %q, unresponsive %v", res.ModuleError, res.Unresponsive)
	}
	if !res.Fresh {
		t.Error("first poll: Fresh = false, want true (a new worker ran C_Initialize)")
	}
	if len(res.Tokens) != 3 {
		t.Fatalf("got %d tokens %v, want the fleet's 3 (the spare uninitialised slot is not a device)", len(res.Tokens), serials(res))
	}
	r.requireAll(res)
	for i, tok := range res.Tokens {
		if i > 0 && res.Tokens[i-1].SlotID >= tok.SlotID {
			t.Errorf("tokens not in slot order: %d then %d", res.Tokens[i-1].SlotID, tok.SlotID)
		}
		want := r.fleet.Tokens[0]
		for _, ft := range r.fleet.Tokens {
			if ft.Serial == tok.Serial {
				want = ft
			}
		}
		if tok.Label != want.Label {
			t.Errorf("token %s label %q, want %q", tok.Serial, tok.Label, want.Label)
		}
		if tok.Model != "SoftHSM v2" || tok.Manufacturer != "SoftHSM project" {
			t.Errorf("token %s model %q manufacturer %q, want SoftHSM v2 / SoftHSM project (trimmed)", tok.Serial, tok.Model, tok.Manufacturer)
		}
		if tok.Firmware != "2.6" || tok.Hardware != "2.6" {
			t.Errorf("token %s firmware %q hardware %q, want 2.6 (major.minor)", tok.Serial, tok.Firmware, tok.Hardware)
		}
		for _, f := range []string{p11.FlagRNG, p11.FlagLoginRequired, p11.FlagUserPINInitialized, p11.FlagTokenInitialized} {
			if !tok.HasFlag(f) {
				t.Errorf("token %s flags %v lack %s", tok.Serial, tok.Flags, f)
			}
		}
		if tok.HasFlag(p11.FlagUserPINLocked) {
			t.Errorf("token %s flags %v: a fresh token is not locked", tok.Serial, tok.Flags)
		}
	}

	res2 := r.poll(p, Request{})
	if res2.Fresh {
		t.Error("second poll: Fresh = true, want the warm worker")
	}
	r.requireAll(res2)
}

func TestFreshWorkerSeesAddedToken(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	p := r.prober()
	r.requireAll(r.poll(p, Request{}))

	added, err := r.fleet.AddToken("added-later")
	if err != nil {
		t.Fatal(err)
	}
	warm := r.poll(p, Request{})
	if warm.Fresh {
		t.Fatal("poll without Fresh used a new worker; want the warm one")
	}
	if tokenBySerial(warm, added.Serial) != nil {
		t.Errorf("warm worker reports the token added after its C_Initialize; the slot list should be frozen")
	}
	fresh := r.poll(p, Request{Fresh: true})
	if !fresh.Fresh {
		t.Error("Request.Fresh: Result.Fresh = false")
	}
	r.requireAll(fresh)
	if len(fresh.Tokens) != 3 {
		t.Errorf("fresh poll: %d tokens, want 3", len(fresh.Tokens))
	}
}

func TestReinitIntervalForcesFreshWorker(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.ReinitInterval = 1 // every poll is past it
	p := r.prober()
	for i := 0; i < 2; i++ {
		res := r.poll(p, Request{})
		r.requireAll(res)
		if !res.Fresh {
			t.Errorf("poll %d: Fresh = false with ReinitInterval 1ns", i)
		}
	}
}

func TestDeviceErrorNamesCKR(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	p := r.prober()
	r.requireAll(r.poll(p, Request{})) // learn the slot of every serial
	bad := r.fleet.Tokens[1].Serial
	r.set(bad, pkcs11test.FaultDeviceError, "") // every call on the token fails

	res := r.poll(p, Request{})
	r.requireAll(res, bad)
	var tok *p11.Token
	for i := range res.Tokens {
		if c := checkOf(&res.Tokens[i], p11.CheckTokenInfo); c != nil && !c.OK {
			tok = &res.Tokens[i]
		}
	}
	if tok == nil {
		t.Fatalf("no token with a failed token_info; tokens %v", serials(res))
	}
	if c := checkOf(tok, p11.CheckTokenInfo); c.Error != "CKR_DEVICE_ERROR" {
		t.Errorf("token_info error %q, want CKR_DEVICE_ERROR", c.Error)
	}
	if tok.Serial != bad {
		t.Errorf("failed token serial %q, want %s from the slot's last poll", tok.Serial, bad)
	}

	r.clear()
	r.set(bad, pkcs11test.FaultDeviceError, "C_GenerateRandom")
	res = r.poll(p, Request{})
	got := tokenBySerial(res, bad)
	if c := checkOf(got, p11.CheckRandom); c == nil || c.OK || c.Error != "CKR_DEVICE_ERROR" {
		t.Errorf("random check %+v, want CKR_DEVICE_ERROR", c)
	}
	if c := checkOf(got, p11.CheckSessionOpen); c == nil || !c.OK {
		t.Errorf("session_open check %+v, want OK", c)
	}
}

func TestFaultFlagsAndFirmwareReported(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	p := r.prober()
	s := r.fleet.Tokens[0].Serial
	r.set(s, pkcs11test.FaultFlags, "user_pin_count_low,so_pin_final_try,error_state")
	r.set(s, pkcs11test.FaultFirmware, "12.50")
	res := r.poll(p, Request{})
	r.requireAll(res)
	tok := tokenBySerial(res, s)
	for _, f := range []string{p11.FlagUserPINCountLow, p11.FlagSOPINFinalTry, p11.FlagErrorState, p11.FlagTokenInitialized} {
		if !tok.HasFlag(f) {
			t.Errorf("flags %v lack %s", tok.Flags, f)
		}
	}
	if tok.Firmware != "12.50" {
		t.Errorf("firmware %q, want 12.50", tok.Firmware)
	}
}

func TestLibraryThatCannotLoad(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.Library = t.TempDir() + "/no-such-pkcs11.so"
	p := r.prober()
	res := r.poll(p, Request{})
	if !strings.Contains(res.ModuleError, "cannot load") || !strings.Contains(res.ModuleError, "no-such-pkcs11.so") ||
		!strings.Contains(res.ModuleError, "No such file") {
		t.Errorf("ModuleError = %q, want the dlopen message naming the library", res.ModuleError)
	}
	if !res.LoadFailed {
		t.Error("LoadFailed is false for a library that does not exist")
	}
	if len(res.Tokens) != 0 {
		t.Errorf("tokens %v from a library that cannot load", serials(res))
	}
}

func TestInitErrorIsModuleError(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	p := r.prober()
	if err := r.faults.SetModule(pkcs11test.FaultInitError, ""); err != nil {
		t.Fatal(err)
	}
	res := r.poll(p, Request{})
	if !strings.Contains(res.ModuleError, "C_Initialize") || !strings.Contains(res.ModuleError, "CKR_GENERAL_ERROR") {
		t.Errorf("ModuleError = %q, want C_Initialize ... CKR_GENERAL_ERROR", res.ModuleError)
	}
	if res.LoadFailed {
		t.Error("LoadFailed is set for a library that loaded but failed C_Initialize (a module fault)")
	}
	r.clear()
	res = r.poll(p, Request{})
	if res.ModuleError != "" || !res.Fresh {
		t.Errorf("after clearing: ModuleError %q, Fresh %v; want a fresh worker that works", res.ModuleError, res.Fresh)
	}
	r.requireAll(res)
}

// A crash in one token's call is that token's fault: it is reported
// Crashed with the signal and the call, and a fresh worker probes the rest.
func TestCrashKeepsEarlierTokensAndRecovers(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4)
	p := r.prober()
	first := r.poll(p, Request{})
	r.requireAll(first)
	// Crash on the third token in slot order.
	victim := first.Tokens[2]
	r.set(victim.Serial, pkcs11test.FaultCrash, "C_GenerateRandom")

	res := r.poll(p, Request{})
	if res.ModuleError != "" {
		t.Errorf("ModuleError = %q, want none: one token crashed", res.ModuleError)
	}
	want := Crashed{SlotID: victim.SlotID, Serial: victim.Serial, Check: p11.CheckRandom,
		Reason: fmt.Sprintf("SIGABRT in C_GenerateRandom on slot %d; the probe worker crashed", victim.SlotID)}
	if len(res.Crashed) != 1 || res.Crashed[0] != want {
		t.Errorf("Crashed = %+v, want [%+v]", res.Crashed, want)
	}
	r.requireAll(res, victim.Serial)
	if tokenBySerial(res, victim.Serial) != nil {
		t.Errorf("crashed token %s reported", victim.Serial)
	}

	r.clear()
	res = r.poll(p, Request{})
	if res.ModuleError != "" || len(res.Crashed) != 0 {
		t.Errorf("after clearing: ModuleError %q Crashed %+v, want none", res.ModuleError, res.Crashed)
	}
	r.requireAll(res)
}

func TestResultJSONHasNoPIN(t *testing.T) {
	// Guards the wire: a WorkerRequest's PIN prints as <secret> everywhere
	// except on the wire.
	t.Parallel()
	req := p11.WorkerRequest{Serial: "s", PIN: "hunter2-pin"}
	for _, s := range []string{req.PIN.String(), req.PIN.GoString(), req.PIN.LogValue().String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("PIN printed as %q", s)
		}
	}
	b, _ := json.Marshal(req)
	if !strings.Contains(string(b), "hunter2-pin") {
		t.Errorf("wire encoding %s lacks the PIN the worker needs", b)
	}
}

func TestScrubPINs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`level=ERROR msg=x pin=1234 serial=ab`:     `level=ERROR msg=x pin=<secret> serial=ab`,
		`{"pin":"s3cret","serial":"ab"}`:           `{"pin":"<secret>","serial":"ab"}`,
		`user PIN: 999999 refused`:                 `user PIN: <secret> refused`,
		`so_pin = abc, next`:                       `so_pin = <secret>, next`,
		`nothing secret here: CKR_PIN_INCORRECT x`: `nothing secret here: CKR_PIN_INCORRECT x`,
	} {
		if got := scrubPINs(in); got != want {
			t.Errorf("scrubPINs(%q) = %q, want %q", in, got, want)
		}
	}
	if got := scrubWith([]byte("Tr0ub4dor"))("login with Tr0ub4dor failed"); strings.Contains(got, "Tr0ub4dor") {
		t.Errorf("scrubWith left the PIN in %q", got)
	}
}

func TestModuleWideFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		fault pkcs11test.Fault
		want  []string
	}{
		{pkcs11test.FaultDeviceError, []string{"C_GetSlotList", "CKR_DEVICE_ERROR"}},
		{pkcs11test.FaultCrash, []string{"crashed", "SIGABRT", "C_GetSlotList or between tokens"}},
	} {
		t.Run(string(c.fault), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, 2)
			p := r.prober()
			if err := r.faults.SetModule(c.fault, ""); err != nil {
				t.Fatal(err)
			}
			res := r.poll(p, Request{})
			for _, w := range c.want {
				if !strings.Contains(res.ModuleError, w) {
					t.Errorf("ModuleError = %q, want it to mention %q", res.ModuleError, w)
				}
			}
			r.clear()
			res = r.poll(p, Request{})
			if res.ModuleError != "" || !res.Fresh {
				t.Errorf("after clearing: ModuleError %q, Fresh %v", res.ModuleError, res.Fresh)
			}
			r.requireAll(res)
		})
	}
}

func TestWorkerDeadBetweenPollsIsReplaced(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2)
	p := r.prober()
	r.requireAll(r.poll(p, Request{}))
	old := p.w
	old.kill()
	old.waitExit(5 * time.Second)
	res := r.poll(p, Request{})
	if res.ModuleError != "" || !res.Fresh {
		t.Errorf("ModuleError %q, Fresh %v; want a fresh worker taking over", res.ModuleError, res.Fresh)
	}
	r.requireAll(res)
}

// A worker that dies at once: the message carries its exit status and its
// last stderr lines, with anything that looks like a PIN hidden.
func TestCrashMessageHasScrubbedStderr(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.Command = []string{"/bin/sh", "-c", `echo "loading $2" >&2; echo "debug: user pin=314159 so_pin: 2718" >&2; exit 7`, "sh"}
	p := r.prober()
	res := r.poll(p, Request{})
	for _, w := range []string{"exit status 7", "loading", "pin=<secret>", "so_pin: <secret>", "C_Initialize"} {
		if !strings.Contains(res.ModuleError, w) {
			t.Errorf("ModuleError = %q, want it to contain %q", res.ModuleError, w)
		}
	}
	for _, secret := range []string{"314159", "2718"} {
		if strings.Contains(res.ModuleError, secret) || strings.Contains(r.logs.String(), secret) {
			t.Errorf("%q leaked into the module error or logs", secret)
		}
	}
}
