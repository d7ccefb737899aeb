package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// A replacement unit (same label, new serial) shows up as an unexpected
// token with its label in the engine's view; once the collector follows
// it, the device is polled under the new serial (self-test, metrics,
// status) and the unit is no longer unexpected. A reload keeps the
// followed serial; one that changes the device's configured serial drops it.
func TestE2EFollowSerial(t *testing.T) {
	t.Parallel()
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pkcs11test.DefaultPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, 2, func(cfg *config.Config) { cfg.Devices[0].PINFile = pinFile })
	old := r.serial(0)
	r.set(old, pkcs11test.FaultMissing, "")
	expect(t, r.poll(true), "dev-0", StateMissing, KindHardware)
	repl, err := r.fleet.AddToken(r.fleet.Tokens[0].Label)
	if err != nil {
		t.Fatal(err)
	}
	h := r.poll(true).Health()
	if len(h.Unexpected) != 1 || h.Unexpected[0].Serial != repl.Serial || h.Unexpected[0].Label != repl.Label || h.Unexpected[0].Module != "soft" {
		t.Fatalf("unexpected tokens %+v, want the replacement %s labelled %q in module soft", h.Unexpected, repl.Serial, repl.Label)
	}

	r.c.FollowSerial("dev-0", repl.Serial)
	s := r.poll(true)
	d := expect(t, s, "dev-0", StateHealthy, KindNone)
	if d.Serial != repl.Serial || d.Inventory.Serial != repl.Serial {
		t.Errorf("dev-0 serial %s, inventory serial %s: want the followed %s", d.Serial, d.Inventory.Serial, repl.Serial)
	}
	hd := d.Health()
	if hd.SelfTest != health.SelfTestPassed || hd.Token == nil || !hd.Token.Initialized || !hd.Token.UserPINInitialized {
		t.Errorf("dev-0 under the new serial: self-test %q, token %+v; want passed, initialised, user PIN initialised", hd.SelfTest, hd.Token)
	}
	if len(s.Unexpected) != 0 {
		t.Errorf("the followed unit is still unexpected: %+v", s.Unexpected)
	}
	if v := r.metric("hsm_up", map[string]string{"device": "dev-0", "serial": repl.Serial}); v != 1 {
		t.Errorf("hsm_up{dev-0, new serial} = %v, want 1", v)
	}
	if _, ok := r.lookup("hsm_up", map[string]string{"device": "dev-0", "serial": old}); ok {
		t.Error("hsm_up still has a series under the old serial")
	}
	if hd := r.poll(true).Health(); hd.Devices[1].SelfTest != health.SelfTestNone {
		t.Errorf("dev-1 has no PIN: self-test %q, want none", hd.Devices[1].SelfTest)
	}

	same := *r.cfg
	if err := r.c.Reload(&same); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.poll(true).Device("dev-0"); d.Serial != repl.Serial {
		t.Errorf("after a reload of the same configuration dev-0 polls %s, want the followed %s", d.Serial, repl.Serial)
	}
	changed := *r.cfg
	changed.Devices = append([]config.Device(nil), r.cfg.Devices...)
	changed.Devices[0].Serial = r.serial(1)
	changed.Devices[1].Serial = old
	if err := r.c.Reload(&changed); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.poll(true).Device("dev-0"); d.Serial != r.serial(1) {
		t.Errorf("after the operator gave dev-0 serial %s, it polls %s", r.serial(1), d.Serial)
	}
}
