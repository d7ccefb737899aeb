package collector

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// This file holds a ModuleProber test double for the unit tests of the
// collector's bookkeeping and metrics. End-to-end tests (e2e_test.go) use
// the real probe.Prober against SoftHSM2 instead.

// pollEvent is one Poll call seen by the fake.
type pollEvent struct {
	module string
	req    probe.Request
}

// fakeFleet creates fake probers and scripts what each module returns.
type fakeFleet struct {
	mu      sync.Mutex
	results map[string]probe.Result
	block   map[string]chan struct{} // Poll waits for a close (or ctx) when set
	probers []*fakeProber
	polls   chan pollEvent
}

func newFakeFleet() *fakeFleet {
	return &fakeFleet{
		results: map[string]probe.Result{},
		block:   map[string]chan struct{}{},
		polls:   make(chan pollEvent, 1000),
	}
}

func (f *fakeFleet) set(module string, res probe.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res.Module = module
	f.results[module] = res
}

// hold makes the module's polls block until the returned func is called.
func (f *fakeFleet) hold(module string) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.block[module] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (f *fakeFleet) newProber(opts probe.Options, _ *slog.Logger) ModuleProber {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &fakeProber{fleet: f, opts: opts, closeCh: make(chan struct{})}
	f.probers = append(f.probers, p)
	return p
}

// probersOf returns every prober created for a module, oldest first.
func (f *fakeFleet) probersOf(module string) []*fakeProber {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeProber
	for _, p := range f.probers {
		if p.opts.Module == module {
			out = append(out, p)
		}
	}
	return out
}

// nextPoll waits for the next Poll call (failing the test after a long wait).
func (f *fakeFleet) nextPoll(t *testing.T) pollEvent {
	t.Helper()
	select {
	case ev := <-f.polls:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no poll within 10s")
		return pollEvent{}
	}
}

type fakeProber struct {
	fleet *fakeFleet
	opts  probe.Options

	mu      sync.Mutex
	polls   int
	closed  bool
	busy    bool
	closeCh chan struct{} // closed by Close: a held Poll returns
}

func (p *fakeProber) Poll(ctx context.Context, req probe.Request) probe.Result {
	p.mu.Lock()
	if p.busy {
		p.mu.Unlock()
		panic("fake prober: concurrent Poll on one prober")
	}
	if p.closed {
		p.mu.Unlock()
		return probe.Result{Module: p.opts.Module, ModuleError: "prober is closed"}
	}
	p.busy = true
	p.polls++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.busy = false
		p.mu.Unlock()
	}()

	f := p.fleet
	f.polls <- pollEvent{module: p.opts.Module, req: req}
	f.mu.Lock()
	block := f.block[p.opts.Module]
	res := f.results[p.opts.Module]
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return probe.Result{Module: p.opts.Module, ModuleError: "context: " + ctx.Err().Error()}
		case <-p.closeCh:
			return probe.Result{Module: p.opts.Module, ModuleError: "poll cancelled: prober closed"}
		}
		// The script may have changed while we were blocked.
		f.mu.Lock()
		res = f.results[p.opts.Module]
		f.mu.Unlock()
	}
	res.Fresh = req.Fresh
	res.Module = p.opts.Module
	return res
}

func (p *fakeProber) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.closeCh)
	}
	return nil
}

func (p *fakeProber) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// fixedNow is the clock of the golden tests.
var fixedNow = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

func date(y int, m time.Month, d int) config.Date {
	return config.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// goldenConfig is an inventory of two modules and seven devices.
func goldenConfig() *config.Config {
	dev := func(name, serial, module, tier string, expires config.Date) config.Device {
		return config.Device{Name: name, Serial: serial, Module: module, Environment: config.EnvProduction,
			Contract: config.Contract{ID: "C-" + name, Tier: tier, Expires: expires, Region: "emea"}}
	}
	a := dev("hsm-a", "a0000001", "alpha", config.TierPremiumPlus, date(2027, 6, 30))
	a.PINFile = "/etc/hsm-agent/pins/hsm-a"
	return &config.Config{
		PollInterval:     15 * time.Second,
		RecheckInterval:  2 * time.Second,
		ProbeTimeout:     10 * time.Second,
		ReinitInterval:   5 * time.Minute,
		SelftestInterval: 10 * time.Minute,
		SlowThreshold:    2 * time.Second,
		ConfirmPolls:     3,
		Modules: []config.Module{
			{Name: "alpha", Library: "/fake/alpha.so"},
			{Name: "beta", Library: "/fake/beta.so"},
		},
		Devices: []config.Device{
			a,
			dev("hsm-b", "b0000002", "alpha", config.TierPremium, date(2026, 12, 31)),
			dev("hsm-c", "c0000003", "alpha", config.TierStandard, date(2026, 4, 1)),
			dev("hsm-d", "d0000004", "alpha", config.TierStandard, config.Date{}),
			dev("hsm-e", "e0000005", "alpha", config.TierStandard, config.Date{}),
			dev("hsm-f", "f0000006", "beta", config.TierPremium, date(2028, 1, 15)),
			dev("hsm-g", "g0000007", "alpha", config.TierStandard, config.Date{}),
		},
		Firmware: config.Firmware{Minimum: "2.6", Approved: []string{"2.6"}},
	}
}

// goldenResults are the fixed probe results behind the golden metrics:
// hsm-a healthy with its self-test, hsm-b slow, hsm-c device error and old
// firmware, hsm-d missing, hsm-e hung, hsm-g PIN locked, one unexpected
// token and an uninitialised spare slot in alpha; beta fails to initialise.
func goldenResults() map[string]probe.Result {
	a := tok("a0000001", func(t *p11.Token) {
		t.SlotID = 11
		t.Checks = append(t.Checks, p11.Check{Name: p11.CheckLoginSign, OK: true, Duration: 4 * time.Millisecond})
	})
	b := tok("b0000002", func(t *p11.Token) { t.SlotID = 12; t.Checks[2].Duration = 2500 * time.Millisecond })
	c := tok("c0000003", func(t *p11.Token) {
		t.SlotID = 13
		t.Firmware = "2.5"
		t.Checks[2] = p11.Check{Name: p11.CheckRandom, Error: "CKR_DEVICE_ERROR", Duration: 2 * time.Millisecond}
	})
	g := tok("g0000007", func(t *p11.Token) {
		t.SlotID = 14
		t.Flags = append(t.Flags, p11.FlagUserPINLocked, p11.FlagUserPINCountLow)
	})
	x := tok("x9999999", func(t *p11.Token) { t.SlotID = 15; t.Label = "new-unit" })
	spare := p11.Token{SlotID: 16, Serial: "", Flags: []string{p11.FlagSOPINLocked}}
	return map[string]probe.Result{
		"alpha": {
			Module: "alpha", Start: fixedNow.Add(-3 * time.Second), Duration: 2750 * time.Millisecond,
			Tokens:       []p11.Token{a, b, c, g, x, spare},
			Unresponsive: []probe.Unresponsive{{SlotID: 17, Serial: "e0000005", Check: p11.CheckRandom}},
		},
		"beta": {
			Module: "beta", Start: fixedNow.Add(-time.Second), Duration: 5 * time.Millisecond,
			ModuleError: "C_Initialize: CKR_GENERAL_ERROR",
		},
	}
}

// newGoldenCollector returns a collector over goldenConfig with the fake fleet
// scripted with goldenResults.
func newGoldenCollector(t *testing.T) (*Collector, *fakeFleet) {
	t.Helper()
	f := newFakeFleet()
	for m, r := range goldenResults() {
		f.set(m, r)
	}
	c, err := New(goldenConfig(), Options{Now: func() time.Time { return fixedNow }, NewProber: f.newProber})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}
