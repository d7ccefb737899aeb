package pkcs11test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// faultRig is a 3-token fleet, a control directory and a child that has
// loaded the fault module over the real SoftHSM2 and called C_Initialize.
type faultRig struct {
	fleet  *Fleet
	faults *Faults
	lib    string
	c      *child
	slots  map[string]uint // real serial -> slot
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	r := &faultRig{fleet: newTestFleet(t, 3), lib: testFaultModule(t)}
	var err error
	if r.faults, err = NewFaults(filepath.Join(t.TempDir(), "faults")); err != nil {
		t.Fatal(err)
	}
	r.c = r.start(t)
	r.c.ok(request{Op: "init"})
	r.slots = serialSlots(r.c.ok(request{Op: "tokens"}))
	if len(r.slots) != 3 {
		t.Fatalf("fault module shows %d tokens before any fault, want 3", len(r.slots))
	}
	return r
}

// start starts another child on the fault module (not initialised).
func (r *faultRig) start(t *testing.T) *child {
	return startChild(t, r.lib, r.fleet.Env(), r.faults.Env())
}

// serials returns the serials the child sees, sorted.
func serialsOf(resp response) []string {
	var s []string
	for serial := range serialSlots(resp) {
		s = append(s, serial)
	}
	slices.Sort(s)
	return s
}

func TestFaultMissing(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim := r.fleet.Tokens[0].Serial
	if err := r.faults.Set(victim, FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	// Same process, no re-initialise: the control dir is read at every call.
	resp := r.c.ok(request{Op: "tokens"})
	if got := serialsOf(resp); len(got) != 2 || slices.Contains(got, victim) {
		t.Fatalf("with %s missing the slot list shows %v", victim, got)
	}
	if _, ok := r.slots[victim]; !ok {
		t.Fatal("victim slot unknown")
	}
	for _, op := range []string{"info", "random"} {
		if resp := r.c.do(request{Op: op, Slot: r.slots[victim]}); resp.Err != "CKR_TOKEN_NOT_PRESENT" {
			t.Errorf("%s on the missing token: %q, want CKR_TOKEN_NOT_PRESENT", op, resp.Err)
		}
	}
	r.c.ok(request{Op: "random", Slot: r.slots[r.fleet.Tokens[1].Serial]})

	// A fresh process sees it missing too.
	c2 := r.start(t)
	c2.ok(request{Op: "init"})
	if got := serialsOf(c2.ok(request{Op: "tokens"})); len(got) != 2 || slices.Contains(got, victim) {
		t.Fatalf("fresh process with %s missing shows %v", victim, got)
	}

	if err := r.faults.Clear(victim, FaultMissing); err != nil {
		t.Fatal(err)
	}
	if got := serialsOf(r.c.ok(request{Op: "tokens"})); len(got) != 3 {
		t.Fatalf("after clearing, the slot list shows %v, want 3 tokens", got)
	}
	r.c.ok(request{Op: "random", Slot: r.slots[victim]})
}

func TestFaultDeviceError(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim, other := r.fleet.Tokens[1].Serial, r.fleet.Tokens[2].Serial
	if err := r.faults.Set(victim, FaultDeviceError, "C_GenerateRandom"); err != nil {
		t.Fatal(err)
	}
	if resp := r.c.do(request{Op: "random", Slot: r.slots[victim]}); resp.Err != "CKR_DEVICE_ERROR" {
		t.Fatalf("C_GenerateRandom with device_error: %q, want CKR_DEVICE_ERROR", resp.Err)
	}
	r.c.ok(request{Op: "info", Slot: r.slots[victim]}) // not named: unaffected
	r.c.ok(request{Op: "random", Slot: r.slots[other]})

	// Empty value: every call on the token.
	if err := r.faults.Set(victim, FaultDeviceError, ""); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"info", "random"} {
		if resp := r.c.do(request{Op: op, Slot: r.slots[victim]}); resp.Err != "CKR_DEVICE_ERROR" {
			t.Errorf("%s with device_error on all calls: %q, want CKR_DEVICE_ERROR", op, resp.Err)
		}
	}
	r.c.ok(request{Op: "info", Slot: r.slots[other]})

	if err := r.faults.Clear(victim, FaultDeviceError); err != nil {
		t.Fatal(err)
	}
	r.c.ok(request{Op: "random", Slot: r.slots[victim]})
	r.c.ok(request{Op: "info", Slot: r.slots[victim]})
}

func TestFaultHang(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim, other := r.fleet.Tokens[0].Serial, r.fleet.Tokens[1].Serial
	if err := r.faults.Set(victim, FaultHang, "C_GenerateRandom"); err != nil {
		t.Fatal(err)
	}
	// A second process shows the other tokens still work while one call hangs.
	c2 := r.start(t)
	c2.ok(request{Op: "init"})

	r.c.send(request{Op: "random", Slot: r.slots[victim]})
	if resp, err := r.c.recv(500 * time.Millisecond); err != errTimeout {
		t.Fatalf("C_GenerateRandom with hang returned: %+v, %v", resp, err)
	}
	c2.ok(request{Op: "random", Slot: r.slots[other]})
	c2.ok(request{Op: "info", Slot: r.slots[victim]}) // not named: unaffected

	// Clearing the fault releases the blocked call, which then succeeds.
	if err := r.faults.Clear(victim, FaultHang); err != nil {
		t.Fatal(err)
	}
	resp, err := r.c.recv(20 * time.Second)
	if err != nil {
		t.Fatalf("hung call not released after clearing the fault: %v", err)
	}
	if resp.Err != "" {
		t.Fatalf("released call: %s", resp.Err)
	}

	// Empty value hangs every call on the token, C_GetTokenInfo included;
	// ClearAll releases it.
	if err := r.faults.Set(victim, FaultHang, ""); err != nil {
		t.Fatal(err)
	}
	r.c.send(request{Op: "info", Slot: r.slots[victim]})
	if _, err := r.c.recv(500 * time.Millisecond); err != errTimeout {
		t.Fatalf("C_GetTokenInfo with hang on all calls returned: %v", err)
	}
	if err := r.faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	if resp, err := r.c.recv(20 * time.Second); err != nil || resp.Err != "" {
		t.Fatalf("after ClearAll: %+v, %v", resp, err)
	}
}

func TestFaultSlow(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim := r.fleet.Tokens[2].Serial
	const delay = 1500 * time.Millisecond
	if err := r.faults.Set(victim, FaultSlow, "1500:C_GenerateRandom"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.c.ok(request{Op: "random", Slot: r.slots[victim]})
	if d := time.Since(start); d < delay {
		t.Fatalf("C_GenerateRandom with slow=1500ms took %v", d)
	}
	if err := r.faults.Clear(victim, FaultSlow); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r.c.ok(request{Op: "random", Slot: r.slots[victim]})
	if d := time.Since(start); d >= delay {
		t.Fatalf("C_GenerateRandom after clearing slow took %v", d)
	}
}

func TestFaultTokenInfo(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim := r.fleet.Tokens[0].Serial
	slot := r.slots[victim]
	before := r.c.ok(request{Op: "info", Slot: slot}).Tokens[0]
	if before.Firmware == "12.50" || before.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0 || before.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
		t.Fatalf("unexpected token info before faults: %+v", before)
	}
	for _, s := range []struct {
		f Fault
		v string
	}{{FaultFirmware, "12.50"}, {FaultSerial, "REPLACED0001"}, {FaultFlags, "user_pin_locked, so_pin_count_low,-token_initialized"}} {
		if err := r.faults.Set(victim, s.f, s.v); err != nil {
			t.Fatal(err)
		}
	}
	got := r.c.ok(request{Op: "info", Slot: slot}).Tokens[0]
	if got.Firmware != "12.50" {
		t.Errorf("firmware %q, want 12.50", got.Firmware)
	}
	if got.Serial != "REPLACED0001" {
		t.Errorf("serial %q, want REPLACED0001", got.Serial)
	}
	wantFlags := (before.Flags | pkcs11.CKF_USER_PIN_LOCKED | pkcs11.CKF_SO_PIN_COUNT_LOW) &^ pkcs11.CKF_TOKEN_INITIALIZED
	if got.Flags != wantFlags {
		t.Errorf("flags %#x, want %#x", got.Flags, wantFlags)
	}
	if got.Label != before.Label {
		t.Errorf("label changed to %q", got.Label)
	}
	// Other tokens keep their own info.
	other := r.c.ok(request{Op: "info", Slot: r.slots[r.fleet.Tokens[1].Serial]}).Tokens[0]
	if other.Serial != r.fleet.Tokens[1].Serial || other.Firmware != before.Firmware || other.Flags != before.Flags {
		t.Errorf("other token affected: %+v", other)
	}
	// The fault is keyed by the real serial: still applies, and the slot
	// list shows the replaced serial.
	if got := serialsOf(r.c.ok(request{Op: "tokens"})); !slices.Contains(got, "REPLACED0001") || slices.Contains(got, victim) {
		t.Errorf("slot walk shows %v", got)
	}

	for _, f := range []Fault{FaultFirmware, FaultSerial, FaultFlags} {
		if err := r.faults.Clear(victim, f); err != nil {
			t.Fatal(err)
		}
	}
	if after := r.c.ok(request{Op: "info", Slot: slot}).Tokens[0]; after != before {
		t.Errorf("after clearing: %+v, want %+v", after, before)
	}
}

func TestFaultCrash(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)
	victim := r.fleet.Tokens[1].Serial
	if err := r.faults.Set(victim, FaultCrash, "C_GenerateRandom"); err != nil {
		t.Fatal(err)
	}
	r.c.ok(request{Op: "info", Slot: r.slots[victim]}) // not named: no crash
	r.c.ok(request{Op: "random", Slot: r.slots[r.fleet.Tokens[0].Serial]})
	r.c.send(request{Op: "random", Slot: r.slots[victim]})
	if sig := r.c.waitSignal(); sig != syscall.SIGABRT {
		t.Fatalf("child killed by %v, want SIGABRT", sig)
	}

	if err := r.faults.Clear(victim, FaultCrash); err != nil {
		t.Fatal(err)
	}
	c2 := r.start(t)
	c2.ok(request{Op: "init"})
	c2.ok(request{Op: "random", Slot: r.slots[victim]})
}

func TestModuleFaults(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t)

	t.Run("init_error", func(t *testing.T) {
		if err := r.faults.SetModule(FaultInitError, ""); err != nil {
			t.Fatal(err)
		}
		c := r.start(t)
		if resp := c.do(request{Op: "init"}); resp.Err != "CKR_GENERAL_ERROR" {
			t.Fatalf("C_Initialize with init_error: %q, want CKR_GENERAL_ERROR", resp.Err)
		}
		if err := r.faults.ClearModule(FaultInitError); err != nil {
			t.Fatal(err)
		}
		c.ok(request{Op: "init"})
		if got := serialsOf(c.ok(request{Op: "tokens"})); len(got) != 3 {
			t.Fatalf("after clearing init_error: %v", got)
		}
	})

	t.Run("crash", func(t *testing.T) {
		if err := r.faults.SetModule(FaultCrash, ""); err != nil {
			t.Fatal(err)
		}
		c := r.start(t)
		c.ok(request{Op: "init"})
		c.send(request{Op: "slots"})
		if sig := c.waitSignal(); sig != syscall.SIGABRT {
			t.Fatalf("child killed by %v, want SIGABRT", sig)
		}
		if err := r.faults.ClearModule(FaultCrash); err != nil {
			t.Fatal(err)
		}
		c2 := r.start(t)
		c2.ok(request{Op: "init"})
		c2.ok(request{Op: "slots"})
	})

	t.Run("hang", func(t *testing.T) {
		if err := r.faults.SetModule(FaultHang, ""); err != nil {
			t.Fatal(err)
		}
		r.c.send(request{Op: "slots"})
		if _, err := r.c.recv(500 * time.Millisecond); err != errTimeout {
			t.Fatalf("C_GetSlotList with module hang returned: %v", err)
		}
		if err := r.faults.ClearModule(FaultHang); err != nil {
			t.Fatal(err)
		}
		resp, err := r.c.recv(20 * time.Second)
		if err != nil || resp.Err != "" || len(resp.Slots) != 4 {
			t.Fatalf("after clearing the module hang: %+v, %v (want 4 slots incl. the spare)", resp, err)
		}
	})
}

func TestFaultsValidation(t *testing.T) {
	t.Parallel()
	f, err := NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		serial string
		f      Fault
		v      string
	}{
		{"abc", FaultInitError, ""},
		{"abc", FaultSlow, "soon"},
		{"abc", FaultSlow, "0"},
		{"abc", FaultFirmware, "12"},
		{"abc", FaultFirmware, "300.1"},
		{"abc", FaultSerial, "12345678901234567"},
		{"abc", FaultFlags, "pin_locked"},
		{"abc", FaultDeviceError, "GenerateRandom"},
		{"", FaultMissing, ""},
		{"../x", FaultMissing, ""},
		{"_module", FaultMissing, ""},
	}
	for _, b := range bad {
		if err := f.Set(b.serial, b.f, b.v); err == nil {
			t.Errorf("Set(%q, %s, %q): no error", b.serial, b.f, b.v)
		}
	}
	if err := f.SetModule(FaultFirmware, "1.2"); err == nil {
		t.Error("SetModule(firmware): no error")
	}
	if err := f.Set("abc", FaultSlow, "20:C_Login"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.Dir, "abc", "slow"))
	if err != nil || string(b) != "20:C_Login" {
		t.Fatalf("control file: %q, %v", b, err)
	}
	if err := f.Clear("abc", FaultSlow); err != nil {
		t.Fatal(err)
	}
	if err := f.Clear("abc", FaultSlow); err != nil {
		t.Fatalf("clearing an absent fault: %v", err)
	}
	if env := f.Env(); env[EnvControlDir] != f.Dir || env[EnvLibrary] != SoftHSMLibrary {
		t.Fatalf("Env() = %v", env)
	}
}

func TestBuildFaultModuleCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := BuildFaultModule(dir)
	if err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := BuildFaultModule(dir)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(p2)
	if p2 != p || !os.SameFile(st1, st2) {
		t.Fatal("second BuildFaultModule rebuilt an up-to-date module")
	}
	// A stale hash forces a rebuild.
	if err := os.WriteFile(p+".sha256", []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p3, err := BuildFaultModule(dir)
	if err != nil {
		t.Fatal(err)
	}
	st3, _ := os.Stat(p3)
	if os.SameFile(st1, st3) {
		t.Fatal("BuildFaultModule did not rebuild after the sources' hash changed")
	}
	if filepath.Base(p) != FaultModuleName {
		t.Fatalf("module named %s", filepath.Base(p))
	}
}

// ClearToken removes every fault of one token and leaves the others'.
func TestClearTokenKeepsOtherTokensFaults(t *testing.T) {
	f, err := NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []struct {
		serial string
		fault  Fault
		value  string
	}{{"aaaa", FaultMissing, ""}, {"aaaa", FaultFirmware, "1.0"}, {"bbbb", FaultDeviceError, ""}} {
		if err := f.Set(set.serial, set.fault, set.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.ClearToken("aaaa"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "aaaa")); !os.IsNotExist(err) {
		t.Errorf("faults of aaaa still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "bbbb", string(FaultDeviceError))); err != nil {
		t.Errorf("the fault of bbbb went too: %v", err)
	}
	if err := f.ClearToken("../x"); err == nil {
		t.Error("a serial with a slash was accepted")
	}
}

// ClearModuleAll removes the module-wide faults and leaves the tokens'.
func TestClearModuleAllKeepsTokenFaults(t *testing.T) {
	f, err := NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetModule(FaultSegv, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("aaaa", FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.ClearModuleAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, moduleScope)); !os.IsNotExist(err) {
		t.Errorf("module faults still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.Dir, "aaaa", string(FaultMissing))); err != nil {
		t.Errorf("the token's fault went too: %v", err)
	}
}
