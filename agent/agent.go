// Package agent wires hsm-agent together: it loads the configuration, runs
// the collector's poll loop, serves the HTTP endpoints (/metrics, health,
// status page), reloads on request and shuts everything down in order.
// Only this package knows the concrete types of every stage.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	// Started, when set, receives the bound HTTP address once the server listens.
	Started func(addr string)
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
	notify  *notifier
}

// Run loads the configuration and runs the daemon until ctx is cancelled.
// It returns nil after an orderly shutdown and an error when the agent
// could not start.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCannotStart, err)
	}
	for _, w := range cfg.CheckFiles() {
		opts.Logger.Warn("configuration refers to a file that is not usable yet", "err", w)
	}
	logs := bundle.NewLogBuffer(opts.Logger.Handler(), 500)
	a := &Agent{opts: opts, logger: slog.New(logs), logs: logs, cfg: cfg, notify: newNotifier()}
	return a.run(ctx)
}

func (a *Agent) run(ctx context.Context) (err error) {
	var stops []func(context.Context) error
	defer func() {
		// Ordered shutdown: reverse start order, one deadline for all.
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i](sctx))
		}
		if serr := errors.Join(errs...); serr != nil {
			a.logger.Error("shutdown", "err", serr)
			err = errors.Join(err, serr)
		}
	}()

	// The state database first: without it no case can be kept, so the
	// agent refuses to start rather than lose cases.
	if a.store, err = openStore(a.cfg); err != nil {
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotWritable) || errors.Is(err, store.ErrIncompatible) {
			return fmt.Errorf("%w: %w", ErrCannotStart, err)
		}
		return err
	}
	stops = append(stops, func(context.Context) error { return a.store.Close() })

	a.reg = prometheus.NewRegistry()
	a.reloads = newReloadMetrics()

	// The outbox worker delivers what the store holds, including rows left
	// pending by an earlier run.
	a.outbox = &deliveries{logger: a.logger, store: a.store, reg: a.reg}
	if err := a.outbox.start(ctx, a.cfg.Desks); err != nil {
		return fmt.Errorf("desks in %s: %w", a.cfg.File, err)
	}
	stops = append(stops, a.outbox.stop)

	a.engine, err = rma.NewEngine(a.cfg, rma.EngineOptions{
		Store:        a.store,
		Logger:       a.logger.With("component", "cases"),
		Now:          a.opts.Now,
		Recheck:      func(module string) { a.coll.Recheck(module) },
		Bundle:       a.caseBundle,
		Kick:         a.outbox.kick,
		AgentVersion: Version,
	})
	if err != nil {
		return fmt.Errorf("start case engine: %w", err)
	}

	var firstPoll sync.Once
	a.coll, err = collector.New(a.cfg, collector.Options{
		Logger:        a.logger.With("component", "collector"),
		Now:           a.opts.Now,
		WorkerCommand: a.opts.WorkerCommand,
		OnPoll: func(snap collector.Snapshot) {
			a.engine.Observe(snap)
			a.notify.alive()
			firstPoll.Do(func() { a.notify.ready() })
		},
	})
	if err != nil {
		return fmt.Errorf("start collector: %w", err)
	}
	stops = append(stops, func(context.Context) error { return a.coll.Close() })

	stops = append(stops, background(ctx, a.engine.Run))

	a.reg.MustRegister(a.coll, a.engine, buildInfo(), a.reloads.success, a.reloads.timestamp,
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
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- serveHTTP(ln, srv, a.opts.WebConfigFile, a.logger) }()
	stops = append(stops, func(ctx context.Context) error { return srv.Shutdown(ctx) })
	a.logger.Info("listening", "addr", ln.Addr().String(), "version", Version)
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
			a.reload(ctx)
		}
	}
}

// reload re-reads the configuration file. A bad file keeps the running
// configuration and sets hsm_agent_config_last_reload_successful to 0.
func (a *Agent) reload(ctx context.Context) {
	a.notify.reloading()
	defer a.notify.ready()
	cfg, err := config.Load(a.opts.ConfigFile)
	if err == nil && a.outbox.changed(cfg.Desks) {
		err = a.outbox.start(ctx, cfg.Desks)
	}
	if err == nil {
		err = a.coll.Reload(cfg)
	}
	if err == nil {
		a.engine.Reload(cfg)
	}
	if err != nil {
		a.logger.Error("reload failed, keeping the running configuration", "err", err)
		a.reloads.set(false, a.now())
		return
	}
	a.mu.Lock()
	old := a.cfg
	a.cfg = cfg
	a.mu.Unlock()
	if old.Listen != cfg.Listen || old.StateDir != cfg.StateDir {
		a.logger.Warn("listen and state_dir take effect at the next restart; the running agent keeps the old ones",
			"listen", old.Listen, "state_dir", old.StateDir)
	}
	a.reloads.set(true, a.now())
	a.logger.Info("configuration reloaded", "file", a.opts.ConfigFile, "devices", len(cfg.Devices))
}

// caseBundle builds the diagnostics bundle of a case for the engine.
func (a *Agent) caseBundle(ctx context.Context, c rma.Case) (string, error) {
	cfg := a.config()
	dev, ok := cfg.Device(c.Device)
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

// background runs fn in a goroutine until the returned stop function
// cancels it; stop waits for fn and returns its error (context.Canceled
// is the expected end, not an error).
func background(ctx context.Context, fn func(context.Context) error) func(context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	return func(context.Context) error {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
}
