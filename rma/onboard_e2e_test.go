package rma_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/internal/testutil"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// End-to-end replacement onboarding: a real SoftHSM2 fleet behind the fault
// module, polled by a real collector in probe workers (this binary, see
// TestMain), a real engine on a real state database. Only Install is a
// recording fake: the lead wires it to the engine's transition.

type onboardRig struct {
	t      *testing.T
	fleet  *pkcs11test.Fleet
	faults *pkcs11test.Faults
	st     *store.Store
	coll   *collector.Collector
	e      *rma.Engine
	logs   *testutil.SyncBuffer

	mu       sync.Mutex
	installs []string // "caseID: evidence"
	polls    atomic.Int64
}

func newOnboardRig(t *testing.T) *onboardRig {
	t.Helper()
	r := &onboardRig{t: t, fleet: pkcs11testtb.NewFleet(t, 3), logs: &testutil.SyncBuffer{}}
	var err error
	if r.faults, err = pkcs11test.NewFaults(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.faults.ClearAll() })
	dir := t.TempDir()
	pin := filepath.Join(dir, "pin")
	if err := os.WriteFile(pin, []byte(pkcs11test.DefaultPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{testutil.WorkerEnv: "1"}
	maps.Copy(env, r.fleet.Env())
	maps.Copy(env, r.faults.Env())
	cfg := config.Default()
	cfg.StateDir = dir
	cfg.PollInterval, cfg.RecheckInterval, cfg.ProbeTimeout = 300*time.Millisecond, 100*time.Millisecond, 5*time.Second
	cfg.ReinitInterval, cfg.ConfirmPolls = time.Hour, 2 // only the engine's rechecks re-initialise
	cfg.Firmware = config.Firmware{Minimum: "2.0"}
	cfg.Modules = []config.Module{{Name: "soft", Library: pkcs11testtb.FaultModule(t), Env: env}}
	for i, tok := range r.fleet.Tokens {
		cfg.Devices = append(cfg.Devices, config.Device{Name: fmt.Sprintf("dev-%d", i), Serial: tok.Serial, Module: "soft",
			Environment: config.EnvProduction, PINFile: pin,
			Contract: config.Contract{ID: "C-1", Tier: config.TierPremium, Expires: date("2099-01-31"), Region: config.RegionEMEA},
			Site:     config.Site{Address: "1 Vault Street", Contact: "ops"}})
	}
	cfg.Desks = []config.Desk{{Name: "ops", Type: config.DeskSpool, Role: config.RoleInternal, Upload: config.UploadAuto, Dir: filepath.Join(dir, "spool")}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.st, err = store.Open(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	r.start(cfg)
	return r
}

// start runs the engine and the collector as the agent wires them.
func (r *onboardRig) start(cfg *config.Config) {
	t := r.t
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	follow, err := r.st.FollowedSerials(context.Background(), cfg.Devices)
	if err != nil {
		t.Fatal(err)
	}
	r.e, err = rma.NewEngine(rma.PolicyFrom(cfg), rma.EngineOptions{
		Store: r.st, Logger: logger,
		Recheck:   func(m string) { r.coll.Recheck(m) },
		Processed: func([]string) { r.polls.Add(1) },
		Onboarding: &rma.Onboarding{
			// As the engine's transition will: the case moves on (and so
			// stops waiting), with the evidence as the event's note.
			Install: func(ctx context.Context, id, evidence string) error {
				r.mu.Lock()
				r.installs = append(r.installs, id+": "+evidence)
				r.mu.Unlock()
				_, err := r.st.Transition(ctx, id, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
					c.State = rma.StateReplacementInstalled
					return rma.Event{Type: rma.StateEvent(c.State), At: time.Now(), Actor: rma.ActorAgent, Note: evidence}, nil, nil
				})
				return err
			},
			Follow: func(device, serial string) { r.coll.FollowSerial(device, serial) },
			Labels: r.st,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.coll, err = collector.New(cfg, collector.Options{Logger: logger, WorkerCommand: []string{os.Args[0]}, Follow: follow,
		OnPoll: func(s collector.Snapshot) { r.e.Observe(s.Health()) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.e.Run(ctx) })
	wg.Go(func() { _ = r.coll.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = r.coll.Close()
		if t.Failed() {
			t.Logf("log:\n%s", r.logs.String())
		}
	})
}

// eventually polls cond until it holds, failing after a generous deadline.
func (r *onboardRig) eventually(what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitPolls waits until the engine processed n more polls.
func (r *onboardRig) waitPolls(n int64) {
	r.t.Helper()
	target := r.polls.Load() + n
	r.eventually(fmt.Sprintf("%d polls", n), func() bool { return r.polls.Load() >= target })
}

func (r *onboardRig) installed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.installs...)
}

// caseWhere returns the first case (open or not) that matches.
func (r *onboardRig) caseWhere(match func(rma.Case) bool) (rma.Case, bool) {
	cases, err := r.st.Cases(context.Background(), false)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, c := range cases {
		if match(c) {
			return c, true
		}
	}
	return rma.Case{}, false
}

// onboardingNotes are the notes of the case's onboarding events.
func (r *onboardRig) onboardingNotes(id string) []string {
	evs, err := r.st.Events(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == rma.EventOnboarding {
			out = append(out, ev.Note)
		}
	}
	return out
}

// failAndShip fails dev-0 (missing), waits for its case, lets prepare set
// up the replacement token (same label, new serial) and its faults, then
// puts the case into replacement_shipped, as the vendor's shipment would.
func (r *onboardRig) failAndShip(prepare func(repl pkcs11test.Token)) (rma.Case, pkcs11test.Token) {
	r.t.Helper()
	old := r.fleet.Tokens[0]
	r.eventually("dev-0 read once (its label is known)", func() bool {
		d, _ := r.coll.Snapshot().Device("dev-0")
		return d.State == collector.StateHealthy
	})
	r.waitPolls(1)
	if err := r.faults.Set(old.Serial, pkcs11test.FaultMissing, ""); err != nil {
		r.t.Fatal(err)
	}
	var c rma.Case
	r.eventually("the missing case of dev-0", func() bool {
		var ok bool
		c, ok = r.caseWhere(func(c rma.Case) bool { return c.Device == "dev-0" && c.Fault == rma.ClassMissing })
		return ok
	})
	repl, err := r.fleet.AddToken(old.Label)
	if err != nil {
		r.t.Fatal(err)
	}
	if prepare != nil {
		prepare(repl)
	}
	c, err = r.st.Transition(context.Background(), c.ID, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.State = rma.StateReplacementShipped
		return rma.Event{Type: rma.StateEvent(c.State), At: time.Now(), Actor: "operator"}, nil, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return c, repl
}

func TestE2EOnboardingInstallsReadyReplacement(t *testing.T) {
	r := newOnboardRig(t)
	c, repl := r.failAndShip(nil)
	r.eventually("install", func() bool { return len(r.installed()) > 0 })
	r.waitPolls(4)
	got := r.installed()
	if len(got) != 1 || !strings.HasPrefix(got[0], c.ID+": ") {
		t.Fatalf("installs %q, want one for case %s", got, c.ID)
	}
	for _, want := range []string{"serial " + repl.Serial, "replacing " + r.fleet.Tokens[0].Serial, "token initialised", "user PIN initialised",
		"logged-in self-test (login_sign) passed", "= the fleet's"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("evidence %q lacks %q", got[0], want)
		}
	}
	hist, err := r.st.SerialHistory(context.Background(), "dev-0")
	if err != nil || len(hist) < 2 || hist[len(hist)-1].Serial != repl.Serial {
		t.Errorf("serial history of dev-0 %+v (%v): want it to end with the replacement %s", hist, err, repl.Serial)
	}
	if d, _ := r.coll.Snapshot().Device("dev-0"); d.Serial != repl.Serial || d.State != collector.StateHealthy {
		t.Errorf("collector: dev-0 serial %s %s, want the replacement %s healthy", d.Serial, d.State, repl.Serial)
	}
	if notes := r.onboardingNotes(c.ID); len(notes) == 0 || !strings.Contains(notes[0], "replacement unit found for dev-0: serial "+repl.Serial) {
		t.Errorf("onboarding notes %q: want the replacement found", notes)
	}
	if follow, err := r.st.FollowedSerials(context.Background(), []config.Device{{Name: "dev-0", Serial: r.fleet.Tokens[0].Serial}}); err != nil || follow["dev-0"] != repl.Serial {
		t.Errorf("after a restart dev-0 would follow %v (%v), want %s", follow, err, repl.Serial)
	}
}

func TestE2EOnboardingFirmwareMismatchOpensFirmwareCase(t *testing.T) {
	r := newOnboardRig(t)
	c, repl := r.failAndShip(func(repl pkcs11test.Token) {
		if err := r.faults.Set(repl.Serial, pkcs11test.FaultFirmware, "9.1"); err != nil {
			t.Fatal(err)
		}
	})
	var fc rma.Case
	r.eventually("the firmware case", func() bool {
		var ok bool
		fc, ok = r.caseWhere(func(c rma.Case) bool { return c.Device == "dev-0" && c.Kind == rma.KindFirmware })
		return ok
	})
	if fc.Serial != repl.Serial || fc.Fault != rma.ClassFleetMismatch || !strings.Contains(fc.Description, "RMA case: "+c.ID) {
		t.Errorf("firmware case %s: serial %s fault %s description %q; want the replacement's fleet_mismatch linked to %s", fc.ID, fc.Serial, fc.Fault, fc.Description, c.ID)
	}
	r.waitPolls(6)
	if got := r.installed(); len(got) != 0 {
		t.Errorf("installed despite the firmware mismatch: %q", got)
	}
	var notReady []string
	for _, n := range r.onboardingNotes(c.ID) {
		if strings.Contains(n, "not ready") {
			notReady = append(notReady, n)
		}
	}
	if len(notReady) != 1 || !strings.Contains(notReady[0], "firmware 9.1 differs from the fleet's firmware") || !strings.Contains(notReady[0], "firmware case "+fc.ID) {
		t.Errorf("not-ready notes %q: want exactly one, naming the firmware mismatch and case %s", notReady, fc.ID)
	}
	if cases, _ := r.st.Cases(context.Background(), true); countKind(cases, rma.KindFirmware) != 1 {
		t.Errorf("open firmware cases: %d, want 1", countKind(cases, rma.KindFirmware))
	}
}

func countKind(cases []rma.Case, k rma.Kind) int {
	n := 0
	for _, c := range cases {
		if c.Kind == k {
			n++
		}
	}
	return n
}

func TestE2EOnboardingWithoutUserPINNotInstalled(t *testing.T) {
	r := newOnboardRig(t)
	c, repl := r.failAndShip(func(repl pkcs11test.Token) {
		if err := r.faults.Set(repl.Serial, pkcs11test.FaultFlags, "-user_pin_initialized"); err != nil {
			t.Fatal(err)
		}
	})
	r.eventually("the not-ready note", func() bool {
		notes := r.onboardingNotes(c.ID)
		return len(notes) > 0 && strings.Contains(notes[len(notes)-1], "the user PIN is not initialised")
	})
	r.waitPolls(6)
	if got := r.installed(); len(got) != 0 {
		t.Fatalf("installed without an initialised user PIN: %q", got)
	}
	notes := r.onboardingNotes(c.ID)
	if len(notes) != 2 {
		t.Errorf("onboarding notes %q: want the unit found, then one not-ready note (once per reason, not every poll)", notes)
	}
	// The operator initialises the PIN: the unit is installed.
	if err := r.faults.Clear(repl.Serial, pkcs11test.FaultFlags); err != nil {
		t.Fatal(err)
	}
	r.eventually("install", func() bool { return len(r.installed()) > 0 })
	r.waitPolls(4)
	if got := r.installed(); len(got) != 1 {
		t.Errorf("installs %q, want exactly one", got)
	}
}
