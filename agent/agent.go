// Package agent wires hsm-agent together: it loads the configuration, runs
// the collector's poll loop, serves the HTTP endpoints (/metrics, health,
// status page), reloads on request and shuts everything down in order.
// Only this package knows the concrete types of every stage. The other
// subcommands are package agent/cli, the service installer agent/service.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/bundle"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// Options are what the command line decides for a daemon run.
type Options struct {
	// ConfigFile is the YAML configuration to load.
	ConfigFile string
	// WebConfigFile is an exporter-toolkit web config (TLS, basic auth); empty serves plain HTTP.
	WebConfigFile string
	// Listen overrides the config's listen address when set (tests use 127.0.0.1:0).
	Listen string
	// Logger receives every log line; nil logs nothing.
	Logger *slog.Logger
	// Reload delivers reload requests (SIGHUP in main).
	Reload <-chan struct{}
	// WorkerCommand starts a probe worker; empty means this executable's probe-worker.
	WorkerCommand []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// EnableLifecycle serves POST /-/reload (a reload, as SIGHUP, answering
	// its outcome); off, it answers 403, as Prometheus does without
	// --web.enable-lifecycle.
	EnableLifecycle bool
	// Started, when set, receives the bound HTTP address once the server listens.
	Started func(addr string)
	// Polled, when set, is called after the case engine processed a poll
	// (rma.EngineOptions.Processed); tests count polls with it.
	Polled func(modules []string)
}

// ExitNoRestart is the exit status of `run` when the agent cannot start
// for a reason a restart cannot fix (invalid configuration, a corrupt,
// incompatible or unwritable state database): the unit lists it in
// RestartPreventExitStatus= so systemd does not loop on it.
const ExitNoRestart = 78

// ErrCannotStart marks errors of Run that a restart cannot fix; see ExitNoRestart.
var ErrCannotStart = errors.New("hsm-agent cannot start")

// Agent is a running daemon: collector, metrics registry and HTTP server.
type Agent struct {
	opts    Options
	logger  *slog.Logger
	logs    *bundle.LogBuffer // recent log lines per device, for bundles
	mu      sync.Mutex        // guards cfg
	cfg     *config.Config
	coll    *collector.Collector
	store   *store.Store
	engine  *rma.Engine
	outbox  *deliveries
	reg     *prometheus.Registry
	reloads *reloadMetrics
	// httpReload carries POST /-/reload requests to Run's loop, each with
	// the channel that receives the reload's outcome.
	httpReload chan chan error
	notify     *notifier
	dbWatch    *dbWatch // the state database file, checked every poll round
}

// Run loads the configuration and runs the daemon until ctx is cancelled.
// It returns nil after an orderly shutdown and an error when the agent
// could not start.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	logs := bundle.NewLogBuffer(opts.Logger.Handler(), 500)
	a := &Agent{opts: opts, logger: slog.New(logs), logs: logs, notify: newNotifier(), httpReload: make(chan chan error)}
	cc, err := loadChecked(ctx, opts.ConfigFile, a.checkOptions())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCannotStart, err)
	}
	for _, w := range cc.warnings {
		opts.Logger.Warn("configuration refers to a file that is not usable yet", "err", w)
	}
	a.cfg = cc.cfg
	return a.run(ctx, cc)
}

// checkOptions are the options of loadChecked for this agent.
func (a *Agent) checkOptions() checkOptions {
	return checkOptions{workerCommand: a.opts.WorkerCommand, logger: a.logger}
}

func (a *Agent) run(ctx context.Context, cc *checkedConfig) (err error) {
	var stops []func(context.Context) error
	defer func() { err = errors.Join(err, a.shutdown(stops)) }()

	// One daemon per state directory, before anything else touches it.
	unlock, err := lockState(a.cfg.StateDir, a.opts.ConfigFile)
	if err != nil {
		return err
	}
	stops = append(stops, func(context.Context) error { return unlock() })

	// The state database first: without it no case can be kept, so the
	// agent refuses to start rather than lose cases.
	if a.store, err = openStore(a.cfg); err != nil {
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotWritable) || errors.Is(err, store.ErrIncompatible) {
			return fmt.Errorf("%w: %w", ErrCannotStart, err)
		}
		return err
	}
	stops = append(stops, func(sctx context.Context) error { return withDeadline(sctx, "close the state database", a.store.Close) })
	if a.dbWatch, err = newDBWatch(filepath.Join(a.cfg.StateDir, StateDBName)); err != nil {
		return err
	}

	a.reg = prometheus.NewRegistry()
	a.reloads = newReloadMetrics()

	// The outbox worker delivers what the store holds, including rows left
	// pending by an earlier run.
	a.outbox = &deliveries{logger: a.logger, store: a.store, scrub: a.scrubText}
	a.outbox.start(ctx, a.cfg.Desks, cc.desks)
	stops = append(stops, a.outbox.stop)

	a.engine, err = rma.NewEngine(rma.PolicyFrom(a.cfg), rma.EngineOptions{
		Store:        a.store,
		Logger:       a.logger.With("component", "cases"),
		Now:          a.opts.Now,
		Recheck:      func(module string) { a.coll.Recheck(module) },
		Bundle:       a.caseBundle,
		Kick:         a.outbox.kick,
		AgentVersion: Version,
		Processed:    a.opts.Polled,
		Onboarding: &rma.Onboarding{
			// A ready replacement fires install through the one
			// transition path (Step runs on the engine's goroutine
			// without waiting for its queue).
			Install: func(ctx context.Context, id, evidence string) error {
				_, err := a.engine.Step(ctx, id, rma.EventInput{Event: rma.StepInstall, Note: evidence}, rma.Action{Actor: rma.ActorAgent})
				return err
			},
			Follow: func(device, serial string) { a.coll.FollowSerial(device, serial) },
			Labels: a.store,
		},
	})
	if err != nil {
		return fmt.Errorf("start case engine: %w", err)
	}

	var firstPoll sync.Once
	a.coll, err = collector.New(a.cfg, collector.Options{
		Logger:        a.logger.With("component", "collector"),
		Now:           a.opts.Now,
		WorkerCommand: a.opts.WorkerCommand,
		Known:         storeSlots(ctx, a.cfg, a.store, a.logger),
		Follow:        followedSerials(ctx, a.cfg, a.store, a.logger),
		OnPoll: func(snap collector.Snapshot) {
			if a.dbWatch.check(); a.dbWatch.err() != nil {
				return // no case event into a database that is gone; run stops
			}
			a.engine.Observe(snap.Health())
			a.notify.alive()
			firstPoll.Do(func() { a.notify.ready() })
		},
	})
	if err != nil {
		return fmt.Errorf("start collector: %w", err)
	}
	stops = append(stops, func(sctx context.Context) error { return withDeadline(sctx, "close the collector", a.coll.Close) })

	stops = append(stops, background(ctx, a.engine.Run))

	a.reg.MustRegister(a.coll, a.engine, a.outbox, buildInfo(), a.reloads.success, a.reloads.timestamp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.reloads.set(true, a.now())

	listen := a.cfg.Listen
	if a.opts.Listen != "" {
		listen = a.opts.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s (config field listen in %s): %w", listen, a.opts.ConfigFile, err)
	}
	srv := newHTTPServer(a.handler(), a.logger)
	serveErr := make(chan error, 1)
	go func() { serveErr <- serveHTTP(ln, srv, a.opts.WebConfigFile, a.logger) }()
	stops = append(stops, func(ctx context.Context) error { return srv.Shutdown(ctx) })
	stops = append(stops, a.serveControl())
	a.logger.Info("listening", "addr", ln.Addr().String(), "version", Version)
	if len(a.cfg.Devices) == 0 {
		a.logger.Warn("discovery mode: the inventory lists no devices, so every token is reported as unexpected (with its serial and label) and no case opens; "+
			"`hsm-agent check` prints the devices: entries to paste", "file", a.opts.ConfigFile)
	}
	if a.opts.Started != nil {
		a.opts.Started(ln.Addr().String())
	}

	stops = append(stops, background(ctx, a.coll.Run))
	stopWatchdog := a.notify.startWatchdog(a.logger, a.watchdogHealthy)
	stops = append(stops, func(context.Context) error { stopWatchdog(); return nil })

	for {
		select {
		case <-ctx.Done():
			a.logger.Info("shutting down")
			a.notify.stopping()
			return nil
		case err := <-serveErr:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		case <-a.opts.Reload:
			_ = a.reload(ctx) // logged and in hsm_agent_config_last_reload_successful
		case reply := <-a.httpReload:
			reply <- a.reload(ctx)
		case err := <-a.dbWatch.fatal:
			a.logger.Error("state database lost", "err", err)
			a.notify.stopping()
			return err
		}
	}
}

// reload re-reads the configuration file. It is all or nothing: the new
// configuration passes every check of loadChecked and may not drop every
// device of a running inventory, then desks, collector and engine switch
// to it together. A refused file keeps the running configuration and sets
// hsm_agent_config_last_reload_successful to 0.
func (a *Agent) reload(ctx context.Context) error {
	a.notify.reloading()
	defer a.notify.ready()
	cc, err := loadChecked(ctx, a.opts.ConfigFile, a.checkOptions())
	old := a.config()
	if err == nil && len(old.Devices) > 0 && len(cc.cfg.Devices) == 0 {
		err = fmt.Errorf("%s has no devices while the running inventory has %d: refusing a reload that would stop watching every HSM; "+
			"list the devices again, or restart the agent to run without an inventory (discovery mode)", a.opts.ConfigFile, len(old.Devices))
	}
	if err == nil {
		// The collector's checks come first: it is the only step that can
		// refuse, so nothing has switched yet when it does.
		err = a.coll.Reload(cc.cfg)
	}
	if err != nil {
		a.logger.Error("reload failed, keeping the running configuration", "file", a.opts.ConfigFile, "err", err)
		a.reloads.set(false, a.now())
		return err
	}
	if a.outbox.changed(cc.cfg.Desks) {
		a.outbox.start(ctx, cc.cfg.Desks, cc.desks)
	}
	a.engine.Reload(rma.PolicyFrom(cc.cfg))
	a.mu.Lock()
	a.cfg = cc.cfg
	a.mu.Unlock()
	for _, w := range cc.warnings {
		a.logger.Warn("configuration refers to a file that is not usable yet", "err", w)
	}
	if old.Listen != cc.cfg.Listen || old.StateDir != cc.cfg.StateDir {
		a.logger.Warn("listen and state_dir take effect at the next restart; the running agent keeps the old ones",
			"listen", old.Listen, "state_dir", old.StateDir)
	}
	a.reloads.set(true, a.now())
	a.logger.Info("configuration reloaded", "file", a.opts.ConfigFile, "devices", len(cc.cfg.Devices))
	return nil
}

// caseBundle builds the diagnostics bundle of a case for the engine.
func (a *Agent) caseBundle(ctx context.Context, c rma.Case) (string, error) {
	cfg := a.config()
	dev, ok := cfg.Device(c.Device)
	if module, isModule := rma.ModuleOf(c.Serial); isModule {
		// A module-level case: the bundle describes the module's library,
		// the configuration and the diagnostics, not one device.
		dev, ok = config.Device{Name: c.Device, Serial: c.Serial, Module: module}, true
	}
	if !ok {
		return "", fmt.Errorf("device %q of case %s is not in the inventory", c.Device, c.ID)
	}
	events, err := a.store.Events(ctx, c.ID)
	if err != nil {
		events = nil // a new case has none yet
	}
	res, err := makeBundle(ctx, cfg, bundleSource{coll: a.coll, logs: a.logs, inUse: a.store.BundlesInUse}, dev, &c, events)
	if err != nil {
		return "", err
	}
	return res.Path, nil
}

// config returns the running configuration.
func (a *Agent) config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

func (a *Agent) now() time.Time {
	if a.opts.Now != nil {
		return a.opts.Now()
	}
	return time.Now()
}

// watchdogHealthy tells the systemd watchdog whether the poll loop still
// completes rounds: a loop stuck for longer than several poll intervals is
// worth a restart.
func (a *Agent) watchdogHealthy(lastAlive time.Time) bool {
	cfg := a.config()
	limit := 3*cfg.PollInterval + 2*cfg.ProbeTimeout
	return time.Since(lastAlive) < limit
}
