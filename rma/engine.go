package rma

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/prometheus/client_golang/prometheus"
)

// Engine defaults (EngineOptions fields left zero).
const (
	DefaultPageFallback          = 60 * time.Second
	DefaultPageCheckInterval     = 2 * time.Second
	DefaultContractCheckInterval = time.Hour
	DefaultQueueSize             = 1024
	DefaultBundleRetryInterval   = 30 * time.Second
	DefaultSLACheckInterval      = time.Minute
)

// EngineOptions wire an Engine to the rest of the agent. Store is required.
type EngineOptions struct {
	// Store holds the cases, their events and the outbox (*store.Store).
	Store Store
	// Logger receives the engine's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock of case times, contract checks and page fallbacks;
	// nil means time.Now. Recheck timing uses real time.
	Now func() time.Time
	// Recheck asks for an extra poll of a module in a fresh worker
	// (collector.Recheck); nil disables rechecks.
	Recheck func(module string)
	// Bundle builds the diagnostics bundle of a case (at open and reopen,
	// before the commit) and returns its path; nil means no bundles. A
	// failing bundle is logged and the case goes out without one.
	Bundle func(ctx context.Context, c Case) (path string, err error)
	// Kick wakes the outbox worker after a commit; nil means none.
	Kick func()
	// PageFallback is how long a severity-1 page waits for the vendor's
	// ticket ID before it goes out without it (default 60s).
	PageFallback time.Duration
	// PageCheckInterval is how often pending pages and cleared cases due
	// to close are looked at, and the open-case metric refreshed from the
	// store (default 2s).
	PageCheckInterval time.Duration
	// ContractCheckInterval is how often contract expiry is checked
	// (default 1h; also at start and on Reload).
	ContractCheckInterval time.Duration
	// QueueSize bounds the snapshots waiting for the engine (default 1024).
	QueueSize int
	// BundleRetryInterval is the first wait before a bundle that could not
	// be written is tried again; it doubles up to 16 times that (default
	// 30s).
	BundleRetryInterval time.Duration
	// SLACheckInterval is how often the vendor clocks of open cases are
	// checked: due dates, breaches, escalations, reminders (default 1m;
	// also at start).
	SLACheckInterval time.Duration
	// AgentVersion goes into case descriptions.
	AgentVersion string
	// Processed, when set, is called on Run's goroutine after each poll
	// handed to Observe was processed (its cases recorded), with the
	// modules it polled. Tests count polls with it to prove that nothing
	// happened over N polls.
	Processed func(modules []string)
	// Onboarding turns on replacement onboarding (onboard.go); nil leaves
	// it off.
	Onboarding *Onboarding
}

// Engine turns confirmed faults into cases: it confirms faults (Tracker),
// rates them (Severity), keeps exactly one case per dedup key (open,
// append, reopen, clear, hold), routes every case event to the desks by
// role through the outbox and pages severity 1. All store writes happen
// on the goroutine of Run, except the operator actions.
type Engine struct {
	opts    EngineOptions
	st      Store
	logger  *slog.Logger
	pol     atomic.Pointer[Policy]
	queue   chan func(context.Context)
	running atomic.Bool
	m       *metrics

	dropping atomic.Bool // the queue is full: log once per burst
	// reloaded signals Run that cfg changed. It is separate from the
	// queue and holds at most one signal, so a reload is coalesced with
	// the pending one and never dropped by a full queue.
	reloaded chan struct{}

	// Owned by Run's goroutine.
	tracker  *Tracker
	rechecks map[string]time.Time    // module -> when to ask for a recheck (real time)
	serials  map[string]string       // device -> serial last recorded
	slots    map[string]SlotSeen     // device -> slot last recorded
	bundles  map[string]*bundleRetry // case -> retries of its owed bundle
	onb      *onboarder              // nil without EngineOptions.Onboarding
	lastPoll health.Poll             // the poll being processed: the fleet's firmware at open
}

// NewEngine returns an engine for a policy (PolicyFrom). Nothing runs
// until Run.
func NewEngine(pol Policy, opts EngineOptions) (*Engine, error) {
	if opts.Store == nil {
		return nil, errors.New("rma: NewEngine needs a Store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageFallback <= 0 {
		opts.PageFallback = DefaultPageFallback
	}
	if opts.PageCheckInterval <= 0 {
		opts.PageCheckInterval = DefaultPageCheckInterval
	}
	if opts.ContractCheckInterval <= 0 {
		opts.ContractCheckInterval = DefaultContractCheckInterval
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.BundleRetryInterval <= 0 {
		opts.BundleRetryInterval = DefaultBundleRetryInterval
	}
	if opts.SLACheckInterval <= 0 {
		opts.SLACheckInterval = DefaultSLACheckInterval
	}
	e := &Engine{opts: opts, st: opts.Store, logger: opts.Logger, queue: make(chan func(context.Context), opts.QueueSize),
		reloaded: make(chan struct{}, 1),
		m:        newMetrics(), tracker: NewTracker(pol.Tracker), rechecks: map[string]time.Time{}, serials: map[string]string{},
		slots: map[string]SlotSeen{}, bundles: map[string]*bundleRetry{}}
	e.onb = newOnboarder(opts.Onboarding)
	e.pol.Store(&pol)
	return e, nil
}

func (e *Engine) now() time.Time { return e.opts.Now().UTC() }

// Observe hands a poll (the collector's snapshot, Snapshot.Health) to the
// engine; the collector's OnPoll calls it. It never blocks: when the queue is full the snapshot is dropped (and
// logged once per burst); the faults it showed are confirmed by later polls.
func (e *Engine) Observe(snap health.Poll) {
	e.enqueue(func(ctx context.Context) { e.process(ctx, snap) })
}

func (e *Engine) enqueue(fn func(context.Context)) bool {
	select {
	case e.queue <- fn:
		if e.dropping.Swap(false) {
			e.logger.Info("engine queue accepts snapshots again")
		}
		return true
	default:
		if !e.dropping.Swap(true) {
			e.logger.Warn("engine queue full: dropping snapshots until it drains (faults are confirmed by later polls)", "queue", cap(e.queue))
		}
		return false
	}
}

// Reload switches to a new policy (of a reloaded configuration): desks,
// devices, thresholds and windows apply to the next events; contracts are
// checked again. It never blocks and is never dropped: Run applies the
// latest policy once, however many reloads came before it got to it.
func (e *Engine) Reload(pol Policy) {
	e.pol.Store(&pol)
	select {
	case e.reloaded <- struct{}{}:
	default: // a reload is pending; it will apply this configuration
	}
}

// applyReload applies the running configuration's policy and checks the
// contracts again; on Run's goroutine.
func (e *Engine) applyReload(ctx context.Context) {
	e.tracker.SetPolicy(e.pol.Load().Tracker)
	e.onb.reloaded()
	e.checkContracts(ctx)
}

// Run processes snapshots, checks contracts and pending pages on timers
// and asks for rechecks, until ctx ends; then it returns nil. At start it
// recovers from the store: faults of open cases that had not cleared are
// known as confirmed (so they neither duplicate nor get lost when they
// clear), pending pages are sent and contracts are checked. The outbox
// needs nothing: its worker resends pending rows. A fault confirmed but not
// yet recorded when the agent stopped is simply confirmed again by polling.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("rma: engine already running")
	}
	defer e.running.Store(false)
	e.recover(ctx)
	e.checkContracts(ctx)
	e.checkPages(ctx)
	e.checkAutoClose(ctx)
	e.checkSLA(ctx)

	sla := time.NewTicker(e.opts.SLACheckInterval)
	defer sla.Stop()
	pages := time.NewTicker(e.opts.PageCheckInterval)
	defer pages.Stop()
	contracts := time.NewTicker(e.opts.ContractCheckInterval)
	defer contracts.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case fn := <-e.queue:
			fn(ctx)
		case <-e.reloaded:
			e.applyReload(ctx)
		case <-pages.C:
			e.checkPages(ctx)
			e.checkAutoClose(ctx)
		case <-contracts.C:
			e.checkContracts(ctx)
		case <-sla.C:
			e.checkSLA(ctx)
		case <-recheck.C:
			e.fireRechecks()
		}
		if next, ok := e.nextRecheck(); ok {
			recheck.Reset(max(time.Until(next), 0))
		}
	}
}

// committed follows every commit: wake the outbox worker, count the
// event, refresh the open-case metric.
func (e *Engine) committed(ctx context.Context, evType string) {
	if e.opts.Kick != nil {
		e.opts.Kick()
	}
	e.m.events.WithLabelValues(evType).Inc()
	e.refresh(ctx)
}

func (e *Engine) refresh(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("refresh the open-case metric", "err", err)
		return
	}
	e.m.setOpen(cases)
}

// Describe implements prometheus.Collector.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) { e.m.describe(ch) }

// Collect implements prometheus.Collector: hsm_cases_open{severity,kind}
// as last read from the store (after each change and every
// PageCheckInterval, never per scrape) and hsm_case_events_total{event}.
func (e *Engine) Collect(ch chan<- prometheus.Metric) { e.m.collect(ch) }
