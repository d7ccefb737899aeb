package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// ModuleProber probes one PKCS#11 module; *probe.Prober satisfies it.
// The collector never calls Poll concurrently on one prober, and calls
// Poll after Close only by a race it tolerates (the result is discarded).
// Close may be called while a Poll runs and should make it return soon.
type ModuleProber interface {
	Poll(ctx context.Context, req probe.Request) probe.Result
	Close() error
}

// Options configure a Collector. Every field is optional.
type Options struct {
	// Logger receives the collector's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock used for timestamps; nil means time.Now.
	Now func() time.Time
	// NewProber creates the prober of one module; nil uses probe.New.
	NewProber func(probe.Options, *slog.Logger) ModuleProber
	// WorkerCommand starts a probe worker (probe.Options.Command); empty
	// means the prober's default, this executable's probe-worker.
	WorkerCommand []string
	// OnPoll is called with the new snapshot after each poll round once
	// every module has been polled at least once (so the first call means
	// ready). Under Run every module runs on its own schedule, so each
	// module's poll is a round and Snapshot.Polled names that module;
	// PollOnce makes one call naming every module. Calls never overlap.
	// OnPoll may call Snapshot, History, Recheck and Reload, but not PollOnce.
	OnPoll func(Snapshot)
	// Known are the serials last read in each module's slots, by module
	// name, from before this collector started (the state database): see
	// probe.Options.Known. Every prober created for the module gets them.
	Known map[string][]probe.KnownSlot
	// Follow maps device names to the serial the device is polled under
	// instead of its inventory serial: a replacement unit the case engine
	// adopted (store.FollowedSerials at start, FollowSerial later). The
	// configuration file is never rewritten.
	Follow map[string]string
}

// Collector polls the modules of an inventory, classifies every device and
// keeps the last snapshot. It is a prometheus.Collector over that snapshot.
type Collector struct {
	logger    *slog.Logger
	now       func() time.Time
	newProber func(probe.Options, *slog.Logger) ModuleProber
	command   []string
	onPoll    func(Snapshot)
	known     map[string][]probe.KnownSlot

	// publishMu orders snapshot publication with the OnPoll call that
	// follows it. Readers (Snapshot, Collect) never take it.
	publishMu sync.Mutex
	snap      atomic.Pointer[Snapshot]

	// mu guards the fields below. It is never held across a probe or a callback.
	mu      sync.Mutex
	cfg     *config.Config
	serials map[string]bool // every inventory serial (followed serials in place of the configured ones)
	// devs is the inventory with each device's followed serial (follow) in
	// place of its configured one; everything that matches tokens uses it.
	devs    []config.Device
	follow  map[string]string // device -> followed serial (FollowSerial)
	modules map[string]*moduleRunner
	devices map[string]*deviceState
	// pinSources is the PIN file each self-testing device last used (logged on change).
	pinSources map[string]string
	ready      bool
	closed     bool
	runCtx     context.Context // set while Run is active
	loops      sync.WaitGroup  // Run's per-module loops
	closing    sync.WaitGroup  // probers of retired modules being closed
}

// moduleRunner is one module: its prober, its poll loop and its last result.
type moduleRunner struct {
	name    string
	opts    probe.Options
	logger  *slog.Logger
	recheck chan struct{} // capacity 1: at most one pending recheck

	pollMu  sync.Mutex // serialises Poll calls on the prober
	prober  ModuleProber
	closing atomic.Bool // set before the prober is closed; results after it are discarded

	// guarded by Collector.mu
	status     ModuleStatus
	unexpected []UnexpectedToken
	retired    bool
	stop       context.CancelFunc
	done       chan struct{}
}

// deviceState is one inventory device: its config entry, status and history.
type deviceState struct {
	dev config.Device // with the followed serial, if any
	// cfgSerial is the serial the configuration gives the device; when a
	// reload changes it, the operator registered another unit and the
	// followed serial is dropped.
	cfgSerial string
	status    DeviceStatus
	hist      history
	// selfTest is the last login_sign check that ran (zero Name if none):
	// the prober runs it at most every selftest_interval, and its result
	// stands in the polls between.
	selfTest   p11.Check
	selfTestAt time.Time
}

// New creates a collector for the inventory of cfg. It starts no worker:
// probers start their workers on the first poll.
func New(cfg *config.Config, opts Options) (*Collector, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	c := &Collector{
		logger:    opts.Logger,
		now:       opts.Now,
		newProber: opts.NewProber,
		command:   slices.Clone(opts.WorkerCommand),
		onPoll:    opts.OnPoll,
		known:     opts.Known,
		follow:    maps.Clone(opts.Follow),
		modules:   map[string]*moduleRunner{},
		devices:   map[string]*deviceState{},
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.newProber == nil {
		c.newProber = defaultNewProber
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.installLocked(cfg)
	c.storeLocked(nil)
	return c, nil
}

// checkConfig rejects what would make the collector spin or never time out.
// Config validation proper belongs to agent/config.
func checkConfig(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("collector: no configuration")
	}
	where := cfg.File
	if where == "" {
		where = "configuration"
	}
	if cfg.PollInterval <= 0 {
		return fmt.Errorf("%s: poll_interval must be greater than 0, got %s", where, cfg.PollInterval)
	}
	if cfg.ProbeTimeout <= 0 {
		return fmt.Errorf("%s: probe_timeout must be greater than 0, got %s", where, cfg.ProbeTimeout)
	}
	return nil
}

func (c *Collector) proberOptions(cfg *config.Config, m config.Module) probe.Options {
	return probe.Options{
		Module:           m.Name,
		Library:          m.Library,
		Env:              maps.Clone(m.Env),
		Command:          slices.Clone(c.command),
		Timeout:          cfg.ProbeTimeout,
		ReinitInterval:   cfg.ReinitInterval,
		SelftestInterval: cfg.SelftestInterval,
	}
}

// installLocked makes cfg the running inventory. Modules whose prober
// options did not change keep their prober (and warm worker); the others
// get a new prober and the old one is closed in the background. Devices
// still present (same name and serial) keep their state and history.
func (c *Collector) installLocked(cfg *config.Config) {
	modules := make(map[string]*moduleRunner, len(cfg.Modules))
	for _, m := range cfg.Modules {
		opts := c.proberOptions(cfg, m)
		if old := c.modules[m.Name]; old != nil && reflect.DeepEqual(old.opts, opts) {
			modules[m.Name] = old
			continue
		}
		logger := c.logger.With("module", m.Name)
		seeded := opts // Known stays out of opts: it is no reason to replace a prober
		seeded.Known = slices.Clone(c.known[m.Name])
		r := &moduleRunner{
			name:    m.Name,
			opts:    opts,
			logger:  logger,
			recheck: make(chan struct{}, 1),
			prober:  c.newProber(seeded, logger),
			status:  ModuleStatus{Name: m.Name},
		}
		modules[m.Name] = r
		if c.runCtx != nil {
			c.startLoopLocked(r)
		}
	}
	for name, old := range c.modules {
		if modules[name] != old {
			c.retireLocked(old)
		}
	}
	c.modules = modules

	devices := make(map[string]*deviceState, len(cfg.Devices))
	serials := make(map[string]bool, len(cfg.Devices))
	devs := make([]config.Device, 0, len(cfg.Devices))
	for _, d := range cfg.Devices {
		ds := c.devices[d.Name]
		d = c.followedLocked(d, ds)
		serials[d.Serial] = true
		switch {
		case ds == nil:
			ds = &deviceState{}
		case ds.dev.Serial != d.Serial:
			// Another unit under the same name: start over, keep the history.
			ds = &deviceState{hist: ds.hist}
		}
		ds.dev = d
		ds.cfgSerial = cfgSerialOf(cfg, d.Name)
		ds.status.Device, ds.status.Serial, ds.status.Module = d.Name, d.Serial, d.Module
		devices[d.Name] = ds
		devs = append(devs, d)
	}
	c.devices = devices
	c.serials = serials
	c.devs = devs
	c.cfg = cfg
}

// retireLocked stops a module's loop and closes its prober in the
// background; a poll in flight is cancelled and its result discarded.
func (c *Collector) retireLocked(r *moduleRunner) {
	r.retired = true
	if r.stop != nil {
		r.stop()
	}
	done := r.done
	c.closing.Add(1)
	go func() {
		defer c.closing.Done()
		if done != nil {
			<-done
		}
		if err := r.closeProber(); err != nil {
			r.logger.Warn("closing the prober of a removed or changed module", "err", err)
		}
	}()
}

// closeProber closes the prober without waiting for a poll in flight (the
// prober cancels it), then waits for that poll to return, so that no
// worker outlives it.
func (r *moduleRunner) closeProber() error {
	if !r.closing.CompareAndSwap(false, true) {
		return nil
	}
	err := r.prober.Close()
	// Wait for a poll in flight to return.
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	if err != nil {
		return fmt.Errorf("module %s: close prober: %w", r.name, err)
	}
	return nil
}

// Reload swaps the inventory. Devices still present keep their state and
// history; modules whose library, environment or timing changed, and
// removed modules, get their prober closed (a changed one gets a new one).
// On error the running inventory is kept.
func (c *Collector) Reload(cfg *config.Config) error {
	if err := checkConfig(cfg); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("collector: reload after close")
	}
	c.installLocked(cfg)
	c.storeLocked(nil)
	c.logger.Info("inventory reloaded", "modules", len(cfg.Modules), "devices", len(cfg.Devices))
	return nil
}

// runners returns the current module runners in inventory order.
func (c *Collector) runnersLocked() []*moduleRunner {
	out := make([]*moduleRunner, 0, len(c.cfg.Modules))
	for _, m := range c.cfg.Modules {
		out = append(out, c.modules[m.Name])
	}
	return out
}

// requestLocked builds the poll request of one module.
func (c *Collector) requestLocked(module string, fresh bool) probe.Request {
	req := probe.Request{Fresh: fresh}
	for _, d := range c.devs {
		if d.Module != module {
			continue
		}
		if pinFile, ok := c.selfTestPINLocked(d); ok {
			req.SelfTests = append(req.SelfTests, probe.SelfTest{Serial: d.Serial, PINFile: pinFile})
		}
	}
	return req
}

// selfTestPINLocked says where a device's PIN is read from: the systemd
// credential pin_<device> when the service was given one, else its
// pin_file. A device with neither gets no logged-in self-test. The source
// is logged when it changes.
func (c *Collector) selfTestPINLocked(d config.Device) (string, bool) {
	path, source := config.CredentialPath(config.CredentialName(config.CredentialPIN, d.Name), d.PINFile)
	if path == "" {
		return "", false
	}
	if c.pinSources == nil {
		c.pinSources = map[string]string{}
	}
	if c.pinSources[d.Name] != path {
		c.pinSources[d.Name] = path
		c.logger.Info("self-test PIN source", "device", d.Name, "source", source, "path", path)
	}
	return path, true
}

// Snapshot returns the last published snapshot. It never waits on a probe.
func (c *Collector) Snapshot() Snapshot { return *c.snap.Load() }

// Ready reports whether the first poll round is done (every module polled).
func (c *Collector) Ready() bool { return c.snap.Load().Ready }

// History returns the recorded observations of an inventory device, oldest
// first: its last RecentObservations polls plus up to FaultObservations
// older non-healthy ones. It returns nil for an unknown device.
func (c *Collector) History(device string) []Observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := c.devices[device]
	if ds == nil {
		return nil
	}
	return ds.hist.list()
}

// Close stops Run's loops and closes every prober (killing the workers),
// waiting for polls in flight to end. The collector cannot poll afterwards;
// Snapshot, History and the metrics keep serving the last state.
func (c *Collector) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	runners := c.runnersLocked()
	for _, r := range runners {
		if r.stop != nil {
			r.stop()
		}
	}
	c.mu.Unlock()

	var errs []error
	for _, r := range runners {
		c.mu.Lock()
		done := r.done
		c.mu.Unlock()
		if done != nil {
			<-done
		}
		errs = append(errs, r.closeProber())
	}
	c.closing.Wait()
	return errors.Join(errs...)
}
