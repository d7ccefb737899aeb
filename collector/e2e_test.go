package collector

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/internal/testutil"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
)

// End-to-end tests: a real SoftHSM2 fleet behind the fault-injecting PKCS#11
// module, probed by the real probe.Prober in worker processes (this test
// binary re-executed, see TestMain), classified and exported by a real
// Collector. No fake of PKCS#11 or of the prober here.

// rig is one fleet, its fault control directory and a collector over it.
type rig struct {
	t      *testing.T
	fleet  *pkcs11test.Fleet
	faults *pkcs11test.Faults
	cfg    *config.Config
	c      *Collector
	reg    *prometheus.Registry
	logs   *syncBuffer
}

type syncBuffer = testutil.SyncBuffer

// newRig creates a fleet of n tokens registered as devices dev-0..dev-n-1 of
// module "soft" (the fault module over SoftHSM2). edit may change the
// configuration before the collector is created.
func newRig(t *testing.T, n int, edit func(*config.Config)) *rig {
	t.Helper()
	fleet := pkcs11testtb.NewFleet(t, n)
	faults, err := pkcs11test.NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Release hung calls so killed workers' siblings never linger.
	t.Cleanup(func() { _ = faults.ClearAll() })
	env := map[string]string{workerEnv: "1"}
	maps.Copy(env, fleet.Env())
	maps.Copy(env, faults.Env())
	cfg := &config.Config{
		PollInterval:     time.Hour, // tests poll with PollOnce
		RecheckInterval:  time.Second,
		ProbeTimeout:     2 * time.Second,
		ReinitInterval:   5 * time.Minute,
		SelftestInterval: 10 * time.Minute,
		SlowThreshold:    2 * time.Second,
		ConfirmPolls:     3,
		Modules:          []config.Module{{Name: "soft", Library: pkcs11testtb.FaultModule(t), Env: env}},
		Firmware:         config.Firmware{Minimum: "2.6"},
	}
	for i, tok := range fleet.Tokens {
		cfg.Devices = append(cfg.Devices, config.Device{
			Name: fmt.Sprintf("dev-%d", i), Serial: tok.Serial, Module: "soft",
			Environment: config.EnvProduction,
			Contract:    config.Contract{ID: "C-1", Tier: config.TierStandard, Expires: date(2027, 1, 31)},
		})
	}
	if edit != nil {
		edit(cfg)
	}
	logs := &syncBuffer{}
	c, err := New(cfg, Options{
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		WorkerCommand: []string{os.Args[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close collector: %v", err)
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", logs.String())
		}
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return &rig{t: t, fleet: fleet, faults: faults, cfg: cfg, c: c, reg: reg, logs: logs}
}

func (r *rig) poll(fresh bool) Snapshot {
	r.t.Helper()
	return r.c.PollOnce(context.Background(), fresh)
}

func (r *rig) set(serial string, f pkcs11test.Fault, value string) {
	r.t.Helper()
	if err := r.faults.Set(serial, f, value); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) setModule(f pkcs11test.Fault, value string) {
	r.t.Helper()
	if err := r.faults.SetModule(f, value); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) clearAll() {
	r.t.Helper()
	if err := r.faults.ClearAll(); err != nil {
		r.t.Fatal(err)
	}
}

// serial returns the serial of device dev-i.
func (r *rig) serial(i int) string { return r.fleet.Tokens[i].Serial }

// expect checks one device's state and kind, and that its reason holds every
// given substring.
func expect(t *testing.T, s Snapshot, device string, state State, kind Kind, reason ...string) DeviceStatus {
	t.Helper()
	d, ok := s.Device(device)
	if !ok {
		t.Fatalf("device %s not in the snapshot", device)
	}
	if d.State != state || d.Kind != kind {
		t.Fatalf("%s: %s/%q (%s), want %s/%q", device, d.State, d.Kind, d.Reason, state, kind)
	}
	for _, want := range reason {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("%s: reason %q does not contain %q", device, d.Reason, want)
		}
	}
	return d
}

// allHealthy checks that every device except the named ones is healthy.
func (r *rig) allHealthy(s Snapshot, except ...string) {
	r.t.Helper()
	for _, d := range s.Devices {
		if !contains(except, d.Device) && d.State != StateHealthy {
			r.t.Errorf("%s: %s (%s), want healthy", d.Device, d.State, d.Reason)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// metric returns the value of the series name{labels}, failing if absent.
func (r *rig) metric(name string, labels map[string]string) float64 {
	r.t.Helper()
	v, ok := r.lookup(name, labels)
	if !ok {
		r.t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func (r *rig) lookup(name string, labels map[string]string) (float64, bool) {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, labels) {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func TestE2EHealthyWithSelfTest(t *testing.T) {
	t.Parallel()
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pkcs11test.DefaultPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, 3, func(cfg *config.Config) { cfg.Devices[0].PINFile = pinFile })
	s := r.poll(false)
	if !s.Ready || !r.c.Ready() {
		t.Fatal("not ready after the first poll")
	}
	r.allHealthy(s)
	m, _ := s.Module("soft")
	if !m.Success() || !m.Fresh || m.Unexpected != 0 {
		t.Errorf("module status %+v: want success, fresh, no unexpected token (SoftHSM2's spare slot is not a unit)", m)
	}
	d := expect(t, s, "dev-0", StateHealthy, KindNone)
	var names []string
	for _, c := range d.Checks {
		names = append(names, c.Name)
		if !c.OK {
			t.Errorf("dev-0 check %+v not OK", c)
		}
	}
	if want := []string{"token_info", "session_open", "random", "login_sign"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("dev-0 checks %v, want %v", names, want)
	}
	if d.Token == nil || d.Token.Serial != r.serial(0) || d.Token.Label != r.fleet.Tokens[0].Label || !d.FirmwareCompliant {
		t.Errorf("dev-0 token %+v compliant %v", d.Token, d.FirmwareCompliant)
	}

	for i := range 3 {
		dev := fmt.Sprintf("dev-%d", i)
		if v := r.metric("hsm_up", map[string]string{"device": dev, "serial": r.serial(i)}); v != 1 {
			t.Errorf("hsm_up{%s} = %v", dev, v)
		}
		if v := r.metric("hsm_device_state", map[string]string{"device": dev, "state": "healthy"}); v != 1 {
			t.Errorf("hsm_device_state{%s,healthy} = %v", dev, v)
		}
		if v := r.metric("hsm_device_info", map[string]string{"device": dev, "serial": r.serial(i), "model": "SoftHSM v2", "firmware": "2.6", "module": "soft"}); v != 1 {
			t.Errorf("hsm_device_info{%s} = %v", dev, v)
		}
	}
	if v := r.metric("hsm_check_success", map[string]string{"device": "dev-0", "check": "login_sign"}); v != 1 {
		t.Errorf("login_sign success = %v", v)
	}
	if _, ok := r.lookup("hsm_check_success", map[string]string{"device": "dev-1", "check": "login_sign"}); ok {
		t.Error("dev-1 has no pin_file but exports a login_sign check")
	}
	if v := r.metric("hsm_module_probe_success", map[string]string{"module": "soft"}); v != 1 {
		t.Errorf("hsm_module_probe_success = %v", v)
	}

	// The live output passes Prometheus' own linter.
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(gatherText(t, r.reg))
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestE2EDegradedSlow(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, func(cfg *config.Config) { cfg.SlowThreshold = 400 * time.Millisecond })
	r.allHealthy(r.poll(false))
	r.set(r.serial(1), pkcs11test.FaultSlow, "900:C_GenerateRandom")
	s := r.poll(false)
	d := expect(t, s, "dev-1", StateDegraded, KindHardware, "check random took", "slow_threshold 400ms")
	if !d.Up() {
		t.Error("a slow device is still up")
	}
	r.allHealthy(s, "dev-1")
	if v := r.metric("hsm_check_duration_seconds", map[string]string{"device": "dev-1", "check": "random"}); v < 0.9 {
		t.Errorf("random duration %vs, want >= 0.9s", v)
	}
	if v := r.metric("hsm_device_state", map[string]string{"device": "dev-1", "state": "degraded"}); v != 1 {
		t.Errorf("hsm_device_state{degraded} = %v", v)
	}
	r.clearAll()
	r.allHealthy(r.poll(false))
}

func TestE2EDegradedPINCountLow(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, nil)
	r.set(r.serial(0), pkcs11test.FaultFlags, p11.FlagUserPINCountLow)
	s := r.poll(false)
	expect(t, s, "dev-0", StateDegraded, KindOperational, "user_pin_count_low")
	r.allHealthy(s, "dev-0")
	if v := r.metric("hsm_token_flag", map[string]string{"device": "dev-0", "flag": "user_pin_count_low"}); v != 1 {
		t.Errorf("hsm_token_flag{user_pin_count_low} = %v", v)
	}
	if v := r.metric("hsm_token_flag", map[string]string{"device": "dev-1", "flag": "user_pin_count_low"}); v != 0 {
		t.Errorf("dev-1 hsm_token_flag{user_pin_count_low} = %v", v)
	}
}

func TestE2EFailedDeviceError(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.allHealthy(r.poll(false))
	r.set(r.serial(2), pkcs11test.FaultDeviceError, "C_GenerateRandom")
	s := r.poll(false)
	d := expect(t, s, "dev-2", StateFailed, KindHardware, "check random failed: CKR_DEVICE_ERROR")
	r.allHealthy(s, "dev-2")
	if d.LastSuccess.IsZero() || d.Since.Before(d.LastSuccess) {
		t.Errorf("failed device: last success %v since %v", d.LastSuccess, d.Since)
	}
	if v := r.metric("hsm_up", map[string]string{"device": "dev-2"}); v != 0 {
		t.Errorf("hsm_up of a failed device = %v", v)
	}
	if v := r.metric("hsm_check_success", map[string]string{"device": "dev-2", "check": "random"}); v != 0 {
		t.Errorf("hsm_check_success{random} = %v", v)
	}
	if v := r.metric("hsm_check_success", map[string]string{"device": "dev-2", "check": "session_open"}); v != 1 {
		t.Errorf("hsm_check_success{session_open} = %v", v)
	}
	r.clearAll()
	r.allHealthy(r.poll(false))
}

func TestE2EFailedPINLocked(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, nil)
	r.set(r.serial(1), pkcs11test.FaultFlags, p11.FlagUserPINLocked)
	s := r.poll(false)
	d := expect(t, s, "dev-1", StateFailed, KindOperational, "user PIN is locked")
	if !d.Reported {
		t.Error("a PIN-locked token still reports")
	}
	r.allHealthy(s, "dev-1")
	if v := r.metric("hsm_token_flag", map[string]string{"device": "dev-1", "flag": "user_pin_locked"}); v != 1 {
		t.Errorf("hsm_token_flag{user_pin_locked} = %v", v)
	}
}

func TestE2EMissing(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.allHealthy(r.poll(false))
	r.set(r.serial(1), pkcs11test.FaultMissing, "")
	// Both a warm worker and a fresh C_Initialize no longer list it.
	expect(t, r.poll(false), "dev-1", StateMissing, KindHardware, "not present in module soft")
	s := r.poll(true)
	d := expect(t, s, "dev-1", StateMissing, KindHardware, "not present in module soft")
	if d.Token == nil || d.Token.Serial != r.serial(1) || d.Reported {
		t.Errorf("missing device keeps the last seen token, not reported: %+v reported %v", d.Token, d.Reported)
	}
	r.allHealthy(s, "dev-1")
	if v := r.metric("hsm_device_state", map[string]string{"device": "dev-1", "state": "missing"}); v != 1 {
		t.Errorf("hsm_device_state{missing} = %v", v)
	}
	if _, ok := r.lookup("hsm_check_success", map[string]string{"device": "dev-1"}); ok {
		t.Error("a missing device still exports check results")
	}
	r.clearAll()
	r.allHealthy(r.poll(true))
}

// TestE2EUnresponsive hangs one token: it becomes unresponsive within
// probe_timeout + 1 s, the others are still reported, and the snapshot and
// metrics answer at once while the probe hangs.
func TestE2EUnresponsive(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, func(cfg *config.Config) { cfg.ProbeTimeout = time.Second })
	r.allHealthy(r.poll(false))
	r.set(r.serial(1), pkcs11test.FaultHang, "C_GenerateRandom")

	done := make(chan Snapshot, 1)
	start := time.Now()
	go func() { done <- r.c.PollOnce(context.Background(), false) }()

	var s Snapshot
	scrapes, slowest := 0, time.Duration(0)
	for s.Time.IsZero() {
		t0 := time.Now()
		text := gatherText(t, r.reg)
		snap := r.c.Snapshot()
		took := time.Since(t0)
		select {
		case s = <-done:
		default:
			// The probe is still in flight: this scrape did not wait for it.
			scrapes++
			slowest = max(slowest, took)
			if !bytes.Contains(text, []byte(`hsm_up{device="dev-1"`)) || len(snap.Devices) != 3 {
				t.Fatalf("scrape during the hang lacks the last known state:\n%s", text)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	if scrapes == 0 {
		t.Fatal("the poll ended before any scrape ran during it; the test proves nothing")
	}
	if slowest >= 100*time.Millisecond {
		t.Errorf("slowest scrape during the hang took %s, want < 100ms", slowest)
	}
	if limit := r.cfg.ProbeTimeout + time.Second; elapsed > limit {
		t.Errorf("hung poll took %s, want within probe_timeout + 1s (%s)", elapsed, limit)
	}
	t.Logf("hung poll %s; %d scrapes during it, slowest %s", elapsed.Round(time.Millisecond), scrapes, slowest)

	expect(t, s, "dev-1", StateUnresponsive, KindHardware, "check random", "probe_timeout 1s")
	r.allHealthy(s, "dev-1") // one hung token does not blank the others
	if v := r.metric("hsm_module_probe_success", map[string]string{"module": "soft"}); v != 0 {
		t.Errorf("hsm_module_probe_success during a hang = %v", v)
	}
	if v := r.metric("hsm_device_state", map[string]string{"device": "dev-1", "state": "unresponsive"}); v != 1 {
		t.Errorf("hsm_device_state{unresponsive} = %v", v)
	}

	r.clearAll()
	r.allHealthy(r.poll(false))
}

func TestE2EModuleErrorCrash(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, nil)
	r.allHealthy(r.poll(false))

	r.setModule(pkcs11test.FaultCrash, "C_GetSlotList")
	s := r.poll(false)
	for _, dev := range []string{"dev-0", "dev-1"} {
		expect(t, s, dev, StateModuleError, KindOperational, "crashed")
	}
	if v := r.metric("hsm_module_probe_success", map[string]string{"module": "soft"}); v != 0 {
		t.Errorf("hsm_module_probe_success after a crash = %v", v)
	}
	if v := r.metric("hsm_up", map[string]string{"device": "dev-0"}); v != 0 {
		t.Errorf("hsm_up after a crash = %v", v)
	}

	// A crash in one token's call: that token alone is charged.
	if err := r.faults.ClearModule(pkcs11test.FaultCrash); err != nil {
		t.Fatal(err)
	}
	r.set(r.serial(1), pkcs11test.FaultCrash, "C_GenerateRandom")
	s = r.poll(false)
	expect(t, s, "dev-1", StateModuleError, KindOperational, "SIGABRT in C_GenerateRandom", "crashed")
	r.allHealthy(s, "dev-1")

	// The collector survived; the next poll recovers once the fault is gone
	// (in the worker that probed the other tokens after the crash, or in a
	// fresh one when the crashed token was the last slot: slot order follows
	// the random serials).
	r.clearAll()
	s = r.poll(false)
	r.allHealthy(s)
	if m, _ := s.Module("soft"); !m.Success() {
		t.Errorf("module after recovery: %+v, want success", m)
	}
}

func TestE2EModuleErrorInit(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, nil)
	r.setModule(pkcs11test.FaultInitError, "")
	s := r.poll(false)
	for _, dev := range []string{"dev-0", "dev-1"} {
		expect(t, s, dev, StateModuleError, KindOperational, "CKR_GENERAL_ERROR")
	}
	if m, _ := s.Module("soft"); m.Error == "" || m.Success() {
		t.Errorf("module status %+v", m)
	}
	r.clearAll()
	r.allHealthy(r.poll(false))
}

func TestE2EModuleErrorBadLibrary(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1, func(cfg *config.Config) {
		cfg.Modules[0].Library = filepath.Join(t.TempDir(), "no-such-pkcs11.so")
	})
	s := r.poll(false)
	expect(t, s, "dev-0", StateModuleError, KindOperational, "no-such-pkcs11.so")
	if !s.Ready {
		t.Error("a module that failed to load still completes the round")
	}
}

// tokenDirOf finds the SoftHSM2 token directory of a serial: SoftHSM2 names
// it after a UUID whose last 16 hex digits are the serial.
func tokenDirOf(t *testing.T, f *pkcs11test.Fleet, serial string) string {
	t.Helper()
	dir := filepath.Join(f.Dir, "tokens")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(strings.ReplaceAll(e.Name(), "-", ""), serial) {
			return filepath.Join(dir, e.Name())
		}
	}
	t.Fatalf("no token directory for serial %s in %s", serial, dir)
	return ""
}

// TestE2ETokenRemovedAndReAdded takes a token's files away and puts them
// back, as an HSM unplugged and plugged in again.
func TestE2ETokenRemovedAndReAdded(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.allHealthy(r.poll(false))
	dir := tokenDirOf(t, r.fleet, r.serial(2))
	away := filepath.Join(t.TempDir(), "away")
	if err := os.Rename(dir, away); err != nil {
		t.Fatal(err)
	}
	s := r.poll(true)
	expect(t, s, "dev-2", StateMissing, KindHardware)
	r.allHealthy(s, "dev-2")

	if err := os.Rename(away, dir); err != nil {
		t.Fatal(err)
	}
	// The slot list is frozen at C_Initialize: a warm worker does not see it.
	s = r.poll(false)
	expect(t, s, "dev-2", StateMissing, KindHardware)
	// A fresh C_Initialize does.
	s = r.poll(true)
	r.allHealthy(s)
	if d, _ := s.Device("dev-2"); !d.Fresh || !d.Reported {
		t.Errorf("re-added device: fresh %v reported %v", d.Fresh, d.Reported)
	}
	h := r.c.History("dev-2")
	var states []string
	for _, o := range h {
		states = append(states, string(o.State))
	}
	if got := strings.Join(states, ","); got != "healthy,missing,missing,healthy" {
		t.Errorf("dev-2 history %s", got)
	}
}

func TestE2ESerialChange(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.allHealthy(r.poll(false))
	const replacement = "feedface00000001"
	r.set(r.serial(0), pkcs11test.FaultSerial, replacement)
	s := r.poll(false)
	expect(t, s, "dev-0", StateMissing, KindHardware)
	r.allHealthy(s, "dev-0")
	if len(s.Unexpected) != 1 || s.Unexpected[0].Token.Serial != replacement || s.Unexpected[0].Module != "soft" {
		t.Fatalf("unexpected tokens %+v, want exactly %s", s.Unexpected, replacement)
	}
	if v := r.metric("hsm_unexpected_tokens", map[string]string{"module": "soft"}); v != 1 {
		t.Errorf("hsm_unexpected_tokens = %v", v)
	}
	r.clearAll()
	s = r.poll(false)
	r.allHealthy(s)
	if len(s.Unexpected) != 0 {
		t.Errorf("unexpected tokens after the fault cleared: %+v", s.Unexpected)
	}
}

func TestE2EFirmwareNotCompliant(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, func(cfg *config.Config) {
		cfg.Firmware = config.Firmware{Minimum: "2.6", Approved: []string{"2.6"}}
	})
	r.set(r.serial(1), pkcs11test.FaultFirmware, "2.5")
	s := r.poll(false)
	r.allHealthy(s) // firmware policy is not device health
	d0, _ := s.Device("dev-0")
	d1, _ := s.Device("dev-1")
	if !d0.FirmwareCompliant || d1.FirmwareCompliant || d1.Token.Firmware != "2.5" {
		t.Errorf("firmware compliant: dev-0 %v, dev-1 %v (%s)", d0.FirmwareCompliant, d1.FirmwareCompliant, d1.Token.Firmware)
	}
	if v := r.metric("hsm_firmware_compliant", map[string]string{"device": "dev-1"}); v != 0 {
		t.Errorf("hsm_firmware_compliant{dev-1} = %v", v)
	}
	if v := r.metric("hsm_firmware_compliant", map[string]string{"device": "dev-0"}); v != 1 {
		t.Errorf("hsm_firmware_compliant{dev-0} = %v", v)
	}
	if v := r.metric("hsm_device_info", map[string]string{"device": "dev-1", "firmware": "2.5"}); v != 1 {
		t.Errorf("hsm_device_info{firmware=2.5} = %v", v)
	}
}

// TestE2ERun drives the real poll loop: a hung module does not delay the
// schedule of a healthy one, and Recheck gets a fresh poll.
func TestE2ERun(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, func(cfg *config.Config) {
		cfg.ProbeTimeout = 2 * time.Second
		cfg.PollInterval = 100 * time.Millisecond
	})
	// A second module over its own fleet, hung in C_GetSlotList.
	other := pkcs11testtb.NewFleet(t, 1)
	otherFaults, err := pkcs11test.NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = otherFaults.ClearAll() })
	if err := otherFaults.SetModule(pkcs11test.FaultHang, "C_GetSlotList"); err != nil {
		t.Fatal(err)
	}
	cfg := *r.cfg
	env := map[string]string{workerEnv: "1"}
	maps.Copy(env, other.Env())
	maps.Copy(env, otherFaults.Env())
	cfg.Modules = append(cfg.Modules[:1:1], config.Module{Name: "stuck", Library: pkcs11testtb.FaultModule(t), Env: env})
	cfg.Devices = append(cfg.Devices[:2:2], config.Device{Name: "stuck-0", Serial: other.Tokens[0].Serial, Module: "stuck"})
	if err := r.c.Reload(&cfg); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// While "stuck" hangs in its first poll (2 s), "soft" completes several.
	deadline := time.Now().Add(20 * time.Second)
	for len(r.c.History("dev-0")) < 3 && time.Now().Before(deadline) {
		if d, _ := r.c.Snapshot().Device("stuck-0"); d.Polled() {
			t.Fatalf("stuck module finished a poll (%s) before soft's third; want soft on its own schedule", d.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(r.c.History("dev-0")); n < 3 {
		t.Fatalf("soft polled %d times", n)
	}
	for !r.c.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := r.c.Snapshot()
	expect(t, s, "stuck-0", StateModuleError, KindOperational, "C_GetSlotList")
	expect(t, s, "dev-0", StateHealthy, KindNone)

	// Recheck: an extra, fresh poll of soft (regular polls of a warm worker are not fresh).
	asked := time.Now()
	r.c.Recheck("soft")
	for time.Now().Before(deadline) {
		for _, o := range r.c.History("dev-1") {
			if o.Time.After(asked) && o.Fresh {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h := r.c.History("dev-1")
	t.Fatalf("no fresh poll of soft after Recheck (history %d entries, last %+v)", len(h), h[len(h)-1])
}
