package collector

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

func TestNewRejectsUnusableTimings(t *testing.T) {
	t.Parallel()
	cfg := goldenConfig()
	cfg.File = "/etc/hsm-agent/config.yml"
	cfg.PollInterval = 0
	_, err := New(cfg, Options{NewProber: newFakeFleet().newProber})
	if err == nil || !strings.Contains(err.Error(), "/etc/hsm-agent/config.yml: poll_interval must be greater than 0") {
		t.Fatalf("New with poll_interval 0: %v", err)
	}
	cfg = goldenConfig()
	cfg.ProbeTimeout = 0
	if _, err := New(cfg, Options{NewProber: newFakeFleet().newProber}); err == nil || !strings.Contains(err.Error(), "probe_timeout") {
		t.Fatalf("New with probe_timeout 0: %v", err)
	}
}

func TestSnapshotStates(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	snap := c.PollOnce(context.Background(), false)

	want := map[string]struct {
		state State
		kind  Kind
		fw    bool
	}{
		"hsm-a": {StateHealthy, KindNone, true},
		"hsm-b": {StateDegraded, KindHardware, true},
		"hsm-c": {StateFailed, KindHardware, false},
		"hsm-d": {StateMissing, KindHardware, false},
		"hsm-e": {StateUnresponsive, KindHardware, false},
		"hsm-f": {StateModuleError, KindOperational, false},
		"hsm-g": {StateFailed, KindOperational, true},
	}
	if len(snap.Devices) != len(want) {
		t.Fatalf("%d devices, want %d", len(snap.Devices), len(want))
	}
	for _, d := range snap.Devices {
		w := want[d.Device]
		if d.State != w.state || d.Kind != w.kind || d.FirmwareCompliant != w.fw {
			t.Errorf("%s: %s/%q fw %v (%s), want %s/%q fw %v", d.Device, d.State, d.Kind, d.FirmwareCompliant, d.Reason, w.state, w.kind, w.fw)
		}
		if !d.Since.Equal(fixedNow) || !d.Updated.Equal(fixedNow) {
			t.Errorf("%s: since %v updated %v, want %v", d.Device, d.Since, d.Updated, fixedNow)
		}
		if d.Up() != !d.LastSuccess.IsZero() {
			t.Errorf("%s: up %v but last success %v", d.Device, d.Up(), d.LastSuccess)
		}
		if d.Inventory.Name != d.Device {
			t.Errorf("%s: inventory entry %q", d.Device, d.Inventory.Name)
		}
	}
	if len(snap.Unexpected) != 1 || snap.Unexpected[0].Token.Serial != "x9999999" || snap.Unexpected[0].Module != "alpha" {
		t.Errorf("unexpected tokens = %+v, want x9999999 in alpha only (the uninitialised spare slot is not a unit)", snap.Unexpected)
	}
	a, _ := snap.Module("alpha")
	b, _ := snap.Module("beta")
	if a.Success() || a.Unresponsive != 1 || a.Tokens != 6 || a.Unexpected != 1 {
		t.Errorf("module alpha = %+v", a)
	}
	if b.Success() || b.Error == "" {
		t.Errorf("module beta = %+v", b)
	}

	// The poll request: hsm-a has a pin_file, so alpha is asked for its self-test.
	reqs := map[string]probe.Request{}
	for range 2 {
		ev := f.nextPoll(t)
		reqs[ev.module] = ev.req
	}
	wantA := probe.Request{SelfTests: []probe.SelfTest{{Serial: "a0000001", PINFile: "/etc/hsm-agent/pins/hsm-a"}}}
	if !reflect.DeepEqual(reqs["alpha"], wantA) {
		t.Errorf("alpha request = %+v, want %+v", reqs["alpha"], wantA)
	}
	if !reflect.DeepEqual(reqs["beta"], probe.Request{}) {
		t.Errorf("beta request = %+v, want none", reqs["beta"])
	}

	c.PollOnce(context.Background(), true)
	for range 2 {
		if ev := f.nextPoll(t); !ev.req.Fresh {
			t.Errorf("PollOnce(fresh) sent %+v to %s", ev.req, ev.module)
		}
	}
}

func TestSinceAndLastSuccessFollowTransitions(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	now := fixedNow
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := goldenConfig()
	c, err := New(cfg, Options{Now: clock, NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	healthy := goldenResults()["alpha"]
	f.set("alpha", healthy)
	f.set("beta", probe.Result{})
	c.PollOnce(context.Background(), false)
	t0 := clock()

	advance(time.Minute)
	c.PollOnce(context.Background(), false) // still healthy: Since stays, LastSuccess moves
	a, _ := c.Snapshot().Device("hsm-a")
	if !a.Since.Equal(t0) || !a.LastSuccess.Equal(t0.Add(time.Minute)) {
		t.Fatalf("healthy twice: since %v last success %v", a.Since, a.LastSuccess)
	}

	advance(time.Minute)
	broken := healthy
	broken.Tokens = slices.DeleteFunc(slices.Clone(healthy.Tokens), func(t p11.Token) bool { return t.Serial == "a0000001" })
	f.set("alpha", broken)
	c.PollOnce(context.Background(), false)
	a, _ = c.Snapshot().Device("hsm-a")
	if a.State != StateMissing || !a.Since.Equal(t0.Add(2*time.Minute)) || !a.LastSuccess.Equal(t0.Add(time.Minute)) {
		t.Fatalf("missing: %s since %v last success %v", a.State, a.Since, a.LastSuccess)
	}
	if a.Reported || a.Checks != nil || a.Token == nil || a.Token.Serial != "a0000001" {
		t.Fatalf("missing device keeps the last seen token but no checks: reported %v checks %v token %+v", a.Reported, a.Checks, a.Token)
	}

	h := c.History("hsm-a")
	if len(h) != 3 || h[0].State != StateHealthy || h[2].State != StateMissing || h[2].Token != nil || h[0].Token == nil {
		t.Fatalf("history = %+v", h)
	}
	if c.History("no-such-device") != nil {
		t.Error("history of an unknown device is not nil")
	}
}

func TestUnexpectedTokenKeepsFirstSeen(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	now := fixedNow
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := New(goldenConfig(), Options{Now: clock, NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	c.PollOnce(context.Background(), false)
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	s := c.PollOnce(context.Background(), false)
	if len(s.Unexpected) != 1 || !s.Unexpected[0].Since.Equal(fixedNow) {
		t.Fatalf("unexpected = %+v, want one first seen at %v", s.Unexpected, fixedNow)
	}
}

func TestOnPollAndReady(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	var got []Snapshot
	var mu sync.Mutex
	c, err := New(goldenConfig(), Options{NewProber: f.newProber, OnPoll: func(s Snapshot) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Ready() || c.Snapshot().Ready {
		t.Fatal("ready before the first poll")
	}
	c.PollOnce(context.Background(), false)
	if !c.Ready() {
		t.Fatal("not ready after the first round")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !got[0].Ready || !slices.Equal(got[0].Polled, []string{"alpha", "beta"}) {
		t.Fatalf("OnPoll calls = %d, first %+v", len(got), got)
	}
}

// TestRunSchedulesModulesIndependently holds one module's probe and checks
// that the other keeps its own schedule meanwhile.
func TestRunSchedulesModulesIndependently(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	cfg := goldenConfig()
	cfg.PollInterval = 5 * time.Millisecond
	var onPoll sync.Map
	c, err := New(cfg, Options{NewProber: f.newProber, OnPoll: func(s Snapshot) {
		for _, m := range s.Polled {
			onPoll.Store(m, true)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	release := f.hold("alpha")
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	alpha, beta := 0, 0
	for beta < 4 {
		switch ev := f.nextPoll(t); ev.module {
		case "alpha":
			alpha++
		case "beta":
			beta++
		}
	}
	if alpha != 1 {
		t.Fatalf("alpha polled %d times while its first probe was held", alpha)
	}
	if s := c.Snapshot(); s.Ready {
		t.Fatal("ready while alpha was never polled")
	}
	if _, ok := onPoll.Load("beta"); ok {
		t.Fatal("OnPoll called before every module was polled")
	}
	release()
	for alpha < 2 { // alpha resumes its schedule
		if ev := f.nextPoll(t); ev.module == "alpha" {
			alpha++
		}
	}
	if !c.Ready() {
		t.Fatal("not ready after both modules polled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if _, ok := onPoll.Load("alpha"); !ok {
		t.Error("OnPoll never named alpha")
	}
	for _, p := range f.probers {
		if p.isClosed() {
			t.Error("Run closed a prober; Close does that")
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.probers {
		if !p.isClosed() {
			t.Errorf("prober of %s not closed by Close", p.opts.Module)
		}
	}
}

// TestRecheckSchedulesAFreshPoll is the seam for confirmation rechecks.
func TestRecheckSchedulesAFreshPoll(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	cfg := goldenConfig()
	cfg.PollInterval = time.Hour
	c, err := New(cfg, Options{NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for range 2 { // the first scheduled poll of each module
		if ev := f.nextPoll(t); ev.req.Fresh {
			t.Fatalf("scheduled poll of %s was fresh", ev.module)
		}
	}
	c.Recheck("no-such-module") // ignored
	c.Recheck("alpha")
	ev := f.nextPoll(t)
	if ev.module != "alpha" || !ev.req.Fresh || len(ev.req.SelfTests) != 1 {
		t.Fatalf("recheck poll = %+v, want a fresh poll of alpha with its self-test", ev)
	}
	// The snapshot reflects the recheck (History grows for alpha's devices only).
	deadline := time.Now().Add(10 * time.Second)
	for (len(c.History("hsm-a")) < 2 || len(c.History("hsm-f")) < 1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(c.History("hsm-a")); n != 2 {
		t.Fatalf("hsm-a history after a recheck has %d entries, want 2", n)
	}
	if n := len(c.History("hsm-f")); n != 1 {
		t.Fatalf("hsm-f (beta) history has %d entries, want 1", n)
	}
	if d, _ := c.Snapshot().Device("hsm-a"); !d.Fresh {
		t.Error("hsm-a status does not say its latest poll was fresh")
	}
	cancel()
	<-done
	select {
	case ev := <-f.polls:
		t.Fatalf("unexpected extra poll %+v", ev)
	default:
	}
}

// TestRunDiscardsPollsCutByShutdown: a probe cut short by cancellation is
// not a module error.
func TestRunDiscardsPollsCutByShutdown(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	c, err := New(goldenConfig(), Options{NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	release := f.hold("alpha")
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for range 2 {
		f.nextPoll(t)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Snapshot().Device("hsm-a"); d.State != "" {
		t.Fatalf("hsm-a after a poll cut by shutdown: %s (%s), want not polled", d.State, d.Reason)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	c.PollOnce(context.Background(), false)
	before, _ := c.Snapshot().Device("hsm-a")

	cfg := goldenConfig()
	cfg.Modules[1].Library = "/fake/beta-v2.so"                                       // beta changed
	cfg.Modules = append(cfg.Modules, config.Module{Name: "gamma", Library: "/x.so"}) // new module
	cfg.Devices = slices.DeleteFunc(cfg.Devices, func(d config.Device) bool { return d.Name == "hsm-b" })
	cfg.Devices[1].Serial = "c0000099" // hsm-c is now another unit
	cfg.Devices = append(cfg.Devices, config.Device{Name: "hsm-h", Serial: "x9999999", Module: "alpha"})
	f.set("gamma", probe.Result{})
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}

	if ps := f.probersOf("alpha"); len(ps) != 1 || ps[0].isClosed() {
		t.Errorf("alpha (unchanged) probers: %d, want the same one, open", len(ps))
	}
	deadline := time.Now().Add(10 * time.Second)
	ps := f.probersOf("beta")
	for len(ps) == 2 && !ps[0].isClosed() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the old prober closes in the background
	}
	if len(ps) != 2 || !ps[0].isClosed() || ps[1].isClosed() {
		t.Errorf("beta (changed): %d probers, want the old closed and a new open one", len(ps))
	}
	s := c.Snapshot()
	if _, ok := s.Device("hsm-b"); ok {
		t.Error("removed device hsm-b still in the snapshot")
	}
	if a, _ := s.Device("hsm-a"); !reflect.DeepEqual(a.Since, before.Since) || a.State != StateHealthy || !a.LastSuccess.Equal(before.LastSuccess) {
		t.Errorf("hsm-a lost its state over a reload: %+v", a)
	}
	if cdev, _ := s.Device("hsm-c"); cdev.State != "" || cdev.Serial != "c0000099" {
		t.Errorf("hsm-c with a new serial kept the old unit's state: %s %s", cdev.State, cdev.Serial)
	}
	if n := len(c.History("hsm-c")); n != 1 {
		t.Errorf("hsm-c history after a serial change has %d entries, want the old unit's 1", n)
	}
	if h, _ := s.Device("hsm-h"); h.State != "" {
		t.Errorf("new device hsm-h state %s before a poll", h.State)
	}
	if !s.Ready {
		t.Error("a reload adding a module made the collector unready")
	}
	if len(s.Unexpected) != 0 {
		t.Errorf("x9999999 is in the inventory now but still unexpected: %+v", s.Unexpected)
	}
	if a, _ := s.Module("alpha"); a.Unexpected != 0 {
		t.Errorf("alpha still counts %d unexpected tokens", a.Unexpected)
	}

	s = c.PollOnce(context.Background(), false)
	if h, _ := s.Device("hsm-h"); h.State != StateHealthy {
		t.Errorf("hsm-h (the former unexpected token) = %s, want healthy", h.State)
	}
	var unexpected []string
	for _, u := range s.Unexpected {
		unexpected = append(unexpected, u.Token.Serial)
	}
	// x9999999 is registered now; hsm-b's unit and hsm-c's old unit are not.
	if !slices.Equal(unexpected, []string{"b0000002", "c0000003"}) {
		t.Errorf("unexpected after the reload = %v, want the units no longer in the inventory", unexpected)
	}
	if cdev, _ := s.Device("hsm-c"); cdev.State != StateMissing {
		t.Errorf("hsm-c (new serial not present) = %s, want missing", cdev.State)
	}
	if len(s.Modules) != 3 {
		t.Errorf("modules after reload = %d, want 3", len(s.Modules))
	}

	bad := goldenConfig()
	bad.ProbeTimeout = 0
	if err := c.Reload(bad); err == nil {
		t.Fatal("reload with probe_timeout 0 accepted")
	}
	if len(c.Snapshot().Modules) != 3 {
		t.Error("a failed reload changed the inventory")
	}
}

// TestReloadWhileRunning starts and stops module loops with the inventory.
func TestReloadWhileRunning(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	cfg := goldenConfig()
	cfg.PollInterval = time.Hour
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for range 2 {
		f.nextPoll(t)
	}
	cfg = goldenConfig()
	cfg.PollInterval = time.Hour
	cfg.Modules = append(cfg.Modules[:1], config.Module{Name: "gamma", Library: "/x.so"})
	cfg.Devices = slices.DeleteFunc(cfg.Devices, func(d config.Device) bool { return d.Module == "beta" })
	f.set("gamma", probe.Result{})
	if err := c.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if ev := f.nextPoll(t); ev.module != "gamma" {
		t.Fatalf("after reload polled %s, want the new module gamma", ev.module)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.probers {
		if !p.isClosed() {
			t.Errorf("prober of %s left open", p.opts.Module)
		}
	}
}

// TestSelfTestResultStands: login_sign runs every selftest_interval; its
// last result stands in the polls between, a check not attempted clears it.
func TestSelfTestResultStands(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	base := goldenResults()["alpha"]
	withA := func(checks ...p11.Check) probe.Result {
		r := base
		r.Tokens = slices.Clone(base.Tokens)
		r.Tokens[0].Checks = append(okChecks(), checks...)
		return r
	}
	step := func(res probe.Result) DeviceStatus {
		t.Helper()
		f.set("alpha", res)
		d, _ := c.PollOnce(context.Background(), false).Device("hsm-a")
		return d
	}
	names := func(d DeviceStatus) []string {
		var n []string
		for _, ch := range d.Checks {
			n = append(n, ch.Name)
		}
		return n
	}

	d := step(withA(p11.Check{Name: p11.CheckLoginSign, Error: "CKR_DEVICE_ERROR", Duration: 3e6}))
	if d.State != StateFailed || d.Kind != KindHardware {
		t.Fatalf("self-test failed: %s/%s", d.State, d.Kind)
	}
	d = step(withA()) // self-test not due: the failure stands
	if d.State != StateFailed || !strings.Contains(d.Reason, "login_sign failed: CKR_DEVICE_ERROR") {
		t.Fatalf("between self-tests: %s (%s), want the failure to stand", d.State, d.Reason)
	}
	if !slices.Equal(names(d), []string{"token_info", "session_open", "random", "login_sign"}) || !d.SelfTestAt.Equal(fixedNow) {
		t.Fatalf("checks %v self-test at %v", names(d), d.SelfTestAt)
	}
	d = step(withA(p11.Check{Name: p11.CheckLoginSign, OK: true, Duration: 3e6}))
	if d.State != StateHealthy {
		t.Fatalf("self-test passed: %s (%s)", d.State, d.Reason)
	}
	d = step(withA())
	if d.State != StateHealthy || len(d.Checks) != 4 {
		t.Fatalf("after a passed self-test: %s, checks %v", d.State, names(d))
	}
	d = step(withA(p11.Check{Name: p11.CheckLoginSign, NotRun: "read pin_file: permission denied"}))
	if d.State != StateHealthy || !d.SelfTestAt.IsZero() {
		t.Fatalf("self-test not attempted: %s, self-test at %v", d.State, d.SelfTestAt)
	}
	d = step(withA())
	if len(d.Checks) != 3 {
		t.Fatalf("a check not attempted was carried: %v", names(d))
	}
	// Devices without a pin_file never get a login_sign carried.
	b, _ := c.Snapshot().Device("hsm-b")
	if slices.Contains(names(b), p11.CheckLoginSign) {
		t.Fatalf("hsm-b has no pin_file but shows %v", names(b))
	}
}

// TestCloseCancelsAPollInFlight: Close does not wait for a stuck probe to
// time out, and the cut-short result is not taken for a module fault.
func TestCloseCancelsAPollInFlight(t *testing.T) {
	t.Parallel()
	c, f := newGoldenCollector(t)
	c.PollOnce(context.Background(), false)
	release := f.hold("alpha")
	defer release()
	polled := make(chan Snapshot, 1)
	go func() { polled <- c.PollOnce(context.Background(), false) }()
	for range 2 {
		f.nextPoll(t)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s := <-polled
	if a, _ := s.Device("hsm-a"); a.State != StateHealthy {
		t.Fatalf("hsm-a after a poll cut by Close: %s (%s), want the last real state", a.State, a.Reason)
	}
	for _, p := range f.probers {
		if !p.isClosed() {
			t.Errorf("prober of %s left open", p.opts.Module)
		}
	}
	if err := c.Reload(goldenConfig()); err == nil {
		t.Error("Reload after Close succeeded")
	}
	if s := c.PollOnce(context.Background(), false); len(s.Devices) != 7 {
		t.Error("PollOnce after Close does not return the last snapshot")
	}
}

// A token whose C_GetTokenInfo fails keeps its last known identity: its
// firmware must not turn into "" (a false non-compliance, a blank info series).
func TestUnreadableTokenKeepsItsIdentity(t *testing.T) {
	t.Parallel()
	f := newFakeFleet()
	c, err := New(goldenConfig(), Options{Now: func() time.Time { return fixedNow }, NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	healthy := goldenResults()["alpha"]
	f.set("alpha", healthy)
	f.set("beta", probe.Result{})
	c.PollOnce(context.Background(), false)
	before, _ := c.Snapshot().Device("hsm-a")

	broken := healthy
	broken.Tokens = slices.Clone(healthy.Tokens)
	for i, tok := range broken.Tokens {
		if tok.Serial == "a0000001" {
			broken.Tokens[i] = p11.Token{SlotID: tok.SlotID, Serial: tok.Serial, Checks: []p11.Check{{Name: p11.CheckTokenInfo, Error: "CKR_DEVICE_ERROR"}}}
		}
	}
	f.set("alpha", broken)
	c.PollOnce(context.Background(), false)
	a, _ := c.Snapshot().Device("hsm-a")
	if a.State != StateFailed {
		t.Fatalf("state %s, want failed", a.State)
	}
	if a.Token.Firmware != before.Token.Firmware || a.Token.Model != before.Token.Model || a.FirmwareCompliant != before.FirmwareCompliant {
		t.Fatalf("identity lost: firmware %q model %q compliant %v, before %q %q %v",
			a.Token.Firmware, a.Token.Model, a.FirmwareCompliant, before.Token.Firmware, before.Token.Model, before.FirmwareCompliant)
	}
	if len(a.Checks) == 0 || a.Checks[0].Name != p11.CheckTokenInfo || a.Checks[0].Error != "CKR_DEVICE_ERROR" {
		t.Fatalf("checks must be this poll's: %+v", a.Checks)
	}
}

// A PIN delivered only as the systemd credential pin_<device> enables the
// self-test; with a credential and a pin_file, the credential wins.
func TestSelfTestPINFromCredential(t *testing.T) {
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	cred := filepath.Join(creds, "pin_hsm-b")
	if err := os.WriteFile(cred, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeFleet()
	f.set("alpha", goldenResults()["alpha"])
	f.set("beta", probe.Result{})
	c, err := New(goldenConfig(), Options{Now: func() time.Time { return fixedNow }, NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.mu.Lock()
	req := c.requestLocked("alpha", false)
	c.mu.Unlock()
	got := map[string]string{}
	for _, st := range req.SelfTests {
		got[st.Serial] = st.PINFile
	}
	// hsm-a has a pin_file and no credential; hsm-b has no pin_file but a credential.
	if got["a0000001"] != "/etc/hsm-agent/pins/hsm-a" || got["b0000002"] != cred || len(got) != 2 {
		t.Fatalf("self-tests %v: want hsm-a from its pin_file and hsm-b from the credential %s", got, cred)
	}
}
