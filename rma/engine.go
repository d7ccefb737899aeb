package rma

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
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
	// PageCheckInterval is how often pending pages are looked at, and the
	// open-case metric refreshed from the store (default 2s).
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
	// AgentVersion goes into case descriptions.
	AgentVersion string
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
	e := &Engine{opts: opts, st: opts.Store, logger: opts.Logger, queue: make(chan func(context.Context), opts.QueueSize),
		reloaded: make(chan struct{}, 1),
		m:        newMetrics(), tracker: NewTracker(pol.Tracker), rechecks: map[string]time.Time{}, serials: map[string]string{},
		slots: map[string]SlotSeen{}, bundles: map[string]*bundleRetry{}}
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
		case <-contracts.C:
			e.checkContracts(ctx)
		case <-recheck.C:
			e.fireRechecks()
		}
		if next, ok := e.nextRecheck(); ok {
			recheck.Reset(max(time.Until(next), 0))
		}
	}
}

// recover learns the still-active faults of open cases.
func (e *Engine) recover(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("recover open cases from the store; faults of open cases will open no duplicate but may not clear", "err", err)
		return
	}
	e.m.setOpen(cases)
	for _, c := range cases {
		if c.Kind == KindContract {
			continue
		}
		active, err := e.active(ctx, c.ID)
		if err != nil {
			e.logger.Error("recover case", "case", c.ID, "err", err)
			continue
		}
		if active {
			e.tracker.Seed(Fault{Serial: c.Serial, Device: c.Device, Kind: c.Kind, Class: c.Fault,
				Summary: c.Summary, Description: c.Description, ObservedAt: c.OpenedAt})
		}
	}
}

// active reports whether a case's fault is in force: its last fault event
// (opened, reopened, updated, held, cleared) is not a clearing.
func (e *Engine) active(ctx context.Context, id string) (bool, error) {
	evs, err := e.st.Events(ctx, id)
	if err != nil {
		return false, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].Type {
		case EventCleared:
			return false, nil
		case EventOpened, EventReopened, EventUpdated, EventHeld:
			return true, nil
		}
	}
	return true, nil
}

// process handles one snapshot: every device of the polled modules, and
// each polled module as a whole. A device whose state is its module's
// (the library failed before any token answered) says nothing about
// itself: its module is observed once, as one module-level fault.
func (e *Engine) process(ctx context.Context, snap health.Poll) {
	pol := *e.pol.Load()
	polled := map[string]bool{}
	for _, m := range snap.Polled {
		polled[m] = true
	}
	moduleWide := map[string][]health.Device{}
	for _, d := range snap.Devices {
		if !polled[d.Module] || !d.Polled {
			continue
		}
		if d.ModuleWide {
			moduleWide[d.Module] = append(moduleWide[d.Module], d)
			continue
		}
		e.recordSerial(ctx, d)
		e.recordSlot(ctx, d)
		e.observe(ctx, pol, DeviceFaults(d, pol), func(f Fault) (int, string, config.Device) {
			sev, impact := Severity(severityInput(pol, snap, d, f))
			return sev, impact, d.Inventory
		})
	}
	for _, m := range snap.Polled {
		mc := ModuleFaults(pol, snap, m, moduleWide[m])
		e.observe(ctx, pol, mc.observed, func(Fault) (int, string, config.Device) { return mc.sev, mc.impact, mc.inv })
	}
}

// observe feeds one observation to the tracker and records what it
// confirms or clears; rate gives a confirmed fault its severity, impact
// and the inventory device its case is routed by.
func (e *Engine) observe(ctx context.Context, pol Policy, o Observed, rate func(Fault) (int, string, config.Device)) {
	for _, ch := range e.tracker.Observe(o) {
		log := e.logger.With("device", o.Device, "serial", o.Serial, "fault", ch.Fault.DedupKey())
		switch ch.Type {
		case Confirmed:
			log.Info("fault confirmed", "flapping", ch.Flapping)
			f := ch.Fault
			f.Description += e.agentLine()
			sev, impact, inv := rate(f)
			if err := e.record(ctx, pol, f, inv, sev, impact, ch.Flapping, true); err != nil {
				log.Error("record the confirmed fault; it will be confirmed again", "err", err)
				e.tracker.Forget(f)
			}
		case Cleared:
			log.Info("fault cleared")
			if err := e.clear(ctx, pol, ch.Fault.DedupKey(), "the device no longer shows the fault"); err != nil {
				log.Error("record the cleared fault", "err", err)
			}
		}
	}
	if e.tracker.Pending(o.Serial) {
		e.scheduleRecheck(o.Module, pol.RecheckInterval)
	}
}

func (e *Engine) agentLine() string {
	v := e.opts.AgentVersion
	if v == "" {
		v = "(version unknown)"
	}
	return fmt.Sprintf("Agent: hsm-agent %s on %s/%s\n", v, runtime.GOOS, runtime.GOARCH)
}

// recordSerial keeps the device -> serial history in the store.
func (e *Engine) recordSerial(ctx context.Context, d health.Device) {
	if e.serials[d.Device] == d.Serial {
		return
	}
	changed, err := e.st.RecordSerial(ctx, d.Device, d.Serial, e.now())
	if err != nil {
		e.logger.Error("record the device's serial", "device", d.Device, "serial", d.Serial, "err", err)
		return
	}
	e.serials[d.Device] = d.Serial
	if changed {
		e.logger.Info("device serial recorded", "device", d.Device, "serial", d.Serial)
	}
}

// recordSlot keeps where each device's token was last read (module, slot,
// label) in the store, for the probe after a restart; it writes only when
// that changes.
func (e *Engine) recordSlot(ctx context.Context, d health.Device) {
	if d.ReadSlot == nil {
		return
	}
	slot := d.ReadSlot.ID
	seen := SlotSeen{Serial: d.Serial, Module: d.Module, SlotID: slot, Label: d.ReadSlot.Label}
	if e.slots[d.Device] == seen {
		return
	}
	if err := e.st.RecordSlot(ctx, d.Device, seen, e.now()); err != nil {
		e.logger.Error("record the device's slot", "device", d.Device, "serial", d.Serial, "slot", slot, "err", err)
		return
	}
	e.slots[d.Device] = seen
}

// severityInput gathers what the severity of a device's fault depends on;
// pool members are counted from the snapshot (healthy = up: healthy or
// degraded).
func severityInput(pol Policy, snap health.Poll, d health.Device, f Fault) SeverityInput {
	inv := d.Inventory
	in := SeverityInput{Kind: f.Kind, Class: f.Class, Environment: inv.Environment, Commissioned: inv.IsCommissioned(), Pool: inv.Pool}
	if inv.Pool == "" {
		return in
	}
	in.MinHealthy = pol.MinHealthy[inv.Pool]
	for _, o := range snap.Devices {
		if o.Inventory.Pool != inv.Pool || o.Serial == d.Serial {
			continue
		}
		switch {
		case !o.Polled:
			in.HealthUnknown = true
		case o.Up:
			in.HealthyLeft++
		}
	}
	return in
}

func (e *Engine) scheduleRecheck(module string, interval time.Duration) {
	if e.opts.Recheck == nil {
		return
	}
	if _, ok := e.rechecks[module]; !ok {
		e.rechecks[module] = time.Now().Add(interval)
	}
}

func (e *Engine) nextRecheck() (time.Time, bool) {
	var next time.Time
	for _, t := range e.rechecks {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, !next.IsZero()
}

func (e *Engine) fireRechecks() {
	now := time.Now()
	for m, t := range e.rechecks {
		if !t.After(now) {
			delete(e.rechecks, m)
			e.opts.Recheck(m)
		}
	}
}

// record turns a confirmed fault into a case event: append to the open
// case of its key, reopen the key's case closed within reopen_window, or
// open a new case. confirmation is false for contract updates (no new
// occurrence).
func (e *Engine) record(ctx context.Context, pol Policy, f Fault, inv config.Device, sev int, impact string, flapping, confirmation bool) error {
	key := f.DedupKey()
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	now := e.now()
	switch {
	case found && !prev.State.Terminal():
		return e.recur(ctx, pol, prev, f, sev, impact, flapping, confirmation)
	case found && prev.State == StateClosed && now.Sub(prev.ClosedAt) <= pol.ReopenWindow:
		return e.reopen(ctx, pol, prev, f, inv, sev, impact)
	}
	return e.open(ctx, pol, f, inv, sev, impact)
}

// open opens a new case with its bundle, its outbox rows and, for
// severity 1 without a vendor, its page.
func (e *Engine) open(ctx context.Context, pol Policy, f Fault, inv config.Device, sev int, impact string) error {
	now := e.now()
	c := Case{ID: NewCaseID(), DedupKey: f.DedupKey(), Serial: f.Serial, Device: f.Device, Fault: f.Class, Kind: f.Kind,
		Severity: sev, Impact: impact, Tier: inv.Contract.Tier, State: StateOpen, Environment: inv.Environment, Pool: inv.Pool,
		Summary: f.Summary, Description: f.Description, OpenedAt: now, UpdatedAt: now, Occurrences: 1, Seq: 1}
	applyPolicy(pol, &c, inv, now, e.opts.PageFallback)
	bundle, note, data := e.bundle(ctx, c)
	if note != "" {
		c.Due[DueBundle] = now.Add(e.opts.BundleRetryInterval)
	}
	data["severity"], data["impact"] = c.Severity, c.Impact
	rows, err := outboxNoting(targets(pol, c, EventOpened, nil), c, EventOpened, nil, bundle, note, now)
	if err != nil {
		return err
	}
	ev := Event{Type: EventOpened, At: now, Actor: ActorAgent, Note: c.Summary, Data: eventData(data)}
	created, err := e.st.OpenCase(ctx, c, ev, rows)
	if err != nil {
		// Another process may have opened the key's case meanwhile: append.
		if prev, found, lerr := e.st.CaseByKey(ctx, c.DedupKey); lerr == nil && found && !prev.State.Terminal() {
			return e.recur(ctx, pol, prev, f, sev, impact, false, true)
		}
		return fmt.Errorf("open a case for %s: %w", c.DedupKey, err)
	}
	e.logger.Info("case opened", "case", created.ID, "device", created.Device, "fault", created.DedupKey,
		"severity", created.Severity, "desks", len(rows), "reason", created.Reason)
	e.committed(ctx, EventOpened)
	e.pageIfDue(ctx, pol, created)
	return nil
}

// bundle builds the case's diagnostics bundle; a failure is logged and
// noted on the event, never fatal: note is then what the desks are told
// (BundleNote), and the bundle follows later (DueBundle).
func (e *Engine) bundle(ctx context.Context, c Case) (path, note string, data map[string]any) {
	data = map[string]any{}
	if e.opts.Bundle == nil {
		return "", "", data
	}
	path, err := e.opts.Bundle(ctx, c)
	if err != nil {
		e.logger.Error("build the diagnostics bundle; the case goes out without it and the bundle follows when it can be written",
			"case", c.ID, "device", c.Device, "err", err)
		data["bundle_error"] = err.Error()
		return "", bundleNote(err), data
	}
	data["bundle"] = path
	return path, "", data
}

// reopen reopens the key's case closed within reopen_window, with a new
// bundle.
func (e *Engine) reopen(ctx context.Context, pol Policy, prev Case, f Fault, inv config.Device, sev int, impact string) error {
	now := e.now()
	next := prev
	next.State, next.ClosedAt, next.Severity = StateOpen, time.Time{}, sev
	bundle, note, data := e.bundle(ctx, next)
	data["severity"], data["impact"], data["closed_at"] = sev, impact, prev.ClosedAt
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State != StateClosed {
			return Event{}, nil, ErrNoChange
		}
		c.State, c.ClosedAt = StateOpen, time.Time{}
		c.Severity, c.Impact, c.Summary, c.Description = sev, impact, f.Summary, f.Description
		c.Tier, c.Environment, c.Pool = inv.Contract.Tier, inv.Environment, inv.Pool
		c.Occurrences++
		c.Held, c.BundleApproved = false, false
		applyPolicy(pol, c, inv, now, e.opts.PageFallback)
		delete(c.Due, DueBundle)
		if note != "" {
			c.Due[DueBundle] = now.Add(e.opts.BundleRetryInterval)
		}
		rows, err := outboxNoting(targets(pol, *c, EventReopened, nil), after(*c, now), EventReopened, nil, bundle, note, now)
		ev := Event{Type: EventReopened, At: now, Actor: ActorAgent, Note: f.Summary, Data: eventData(data)}
		return ev, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return nil // changed meanwhile (e.g. reopened by another process)
	}
	if err != nil {
		return fmt.Errorf("reopen case %s: %w", prev.ID, err)
	}
	e.logger.Info("case reopened", "case", c.ID, "device", c.Device, "fault", c.DedupKey, "severity", c.Severity)
	e.committed(ctx, EventReopened)
	e.pageIfDue(ctx, pol, c)
	return nil
}

// recur appends a recurrence (or, for contracts, a change of threshold) to
// an open case: case.updated to the desks that have the case, or a single
// case.held when it starts flapping; nothing to desks while held.
func (e *Engine) recur(ctx context.Context, pol Policy, prev Case, f Fault, sev int, impact string, flapping, confirmation bool) error {
	have, _, err := deskSet(ctx, e.st, prev.ID)
	if err != nil {
		return err
	}
	now := e.now()
	var evType string
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		old := c.Severity
		if c.Due == nil {
			c.Due = map[string]time.Time{}
		}
		if confirmation {
			c.Occurrences++
		}
		c.Severity, c.Impact, c.Summary, c.Description = sev, impact, f.Summary, f.Description
		data := map[string]any{"severity": sev, "impact": impact, "occurrences": c.Occurrences}
		if old != sev {
			data["previous_severity"] = old
			if d := now.Add(ResponseTarget(sev)); sev < old && d.Before(c.Due[DueResponse]) {
				c.Due[DueResponse] = d
			}
		}
		if sev == SeverityUrgent && old != SeverityUrgent && len(pol.desksWithRole(config.RolePager)) > 0 {
			// An escalation to 1 gets its own page.
			c.Due[DuePage] = now.Add(e.opts.PageFallback)
			if !have[firstVendorDesk(pol, have)] {
				c.Due[DuePage] = now
			}
		}
		evType = EventUpdated
		deliver := !c.Held
		note := f.Summary
		switch {
		case flapping && !c.Held:
			c.Held, evType, deliver = true, EventHeld, true
			note = fmt.Sprintf("flapping: confirmed more than %d times within %s; further recurrences are recorded here without desk events", pol.Tracker.FlapLimit, pol.Tracker.FlapWindow)
		case !flapping && c.Held && confirmation:
			c.Held, deliver = false, true
			note = "no longer flapping: " + f.Summary
		}
		var rows []Delivery
		if deliver {
			var err error
			if rows, err = outbox(targets(pol, *c, evType, have), after(*c, now), evType, nil, "", now); err != nil {
				return Event{}, nil, err
			}
		}
		return Event{Type: evType, At: now, Actor: ActorAgent, Note: note, Data: eventData(data)}, rows, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("append to case %s: %w", prev.ID, err)
	}
	e.logger.Info("case updated", "case", c.ID, "event", evType, "occurrences", c.Occurrences, "held", c.Held)
	e.committed(ctx, evType)
	e.pageIfDue(ctx, pol, c)
	return nil
}

// clear records that the open case of key no longer shows its fault; the
// case stays open until an operator closes it.
func (e *Engine) clear(ctx context.Context, pol Policy, key, note string) error {
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	if !found || prev.State.Terminal() {
		return nil
	}
	have, _, err := deskSet(ctx, e.st, prev.ID)
	if err != nil {
		return err
	}
	now := e.now()
	c, err := e.st.Transition(ctx, prev.ID, func(c *Case) (Event, []Delivery, error) {
		if c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		var rows []Delivery
		if !c.Held {
			var err error
			if rows, err = outbox(targets(pol, *c, EventCleared, have), after(*c, now), EventCleared, nil, "", now); err != nil {
				return Event{}, nil, err
			}
		}
		return Event{Type: EventCleared, At: now, Actor: ActorAgent, Note: note}, rows, nil
	})
	if errors.Is(err, ErrNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear case %s: %w", prev.ID, err)
	}
	e.logger.Info("case cleared", "case", c.ID, "device", c.Device, "fault", c.DedupKey)
	e.committed(ctx, EventCleared)
	return nil
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

// checkContracts opens, updates and clears the contract cases of every
// device of the inventory at the engine's clock.
func (e *Engine) checkContracts(ctx context.Context) {
	pol := *e.pol.Load()
	now := e.now()
	for _, inv := range pol.Devices {
		f, present := ContractFault(inv, now)
		for _, class := range []string{ClassExpiring, ClassExpired} {
			if err := e.contract(ctx, pol, inv, class, f, present && f.Class == class); err != nil {
				e.logger.Error("contract case", "device", inv.Name, "serial", inv.Serial, "fault", class, "err", err)
			}
		}
	}
}

func (e *Engine) contract(ctx context.Context, pol Policy, inv config.Device, class string, f Fault, present bool) error {
	key := DedupKey(inv.Serial, KindContract, class)
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	open := found && !prev.State.Terminal()
	if !present {
		if !open {
			return nil
		}
		if active, err := e.active(ctx, prev.ID); err != nil || !active {
			return err
		}
		return e.clear(ctx, pol, key, "the contract is no longer "+class)
	}
	f.Description += e.agentLine()
	sev, impact := Severity(SeverityInput{Kind: KindContract, Class: class, Environment: inv.Environment, Commissioned: inv.IsCommissioned()})
	switch {
	case open:
		active, err := e.active(ctx, prev.ID)
		if err != nil {
			return err
		}
		if active && sameFacts(prev.Description, f.Description) {
			return nil
		}
		return e.recur(ctx, pol, prev, f, sev, impact, false, !active)
	case found && sameFacts(prev.Description, f.Description):
		return nil // an operator closed the case at this threshold
	}
	return e.record(ctx, pol, f, inv, sev, impact, false, true)
}

// sameFacts compares two descriptions without their agent line (an
// upgrade must not look like a new threshold).
func sameFacts(a, b string) bool { return stripAgent(a) == stripAgent(b) }

func stripAgent(s string) string {
	if i := strings.LastIndex(s, "Agent: hsm-agent "); i >= 0 {
		return s[:i]
	}
	return s
}

// checkPages sends the pending severity-1 pages whose vendor ticket ID
// arrived or whose fallback time passed, tries again the bundles cases
// still owe their desks, and refreshes the open-case metric.
func (e *Engine) checkPages(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("look for pending pages", "err", err)
		return
	}
	e.m.setOpen(cases)
	pol := *e.pol.Load()
	for _, c := range cases {
		if _, ok := c.Due[DuePage]; ok {
			e.pageIfDue(ctx, pol, c)
		}
		if _, ok := c.Due[DueBundle]; ok {
			e.followBundle(ctx, pol, c)
		}
	}
}

// firstVendorDesk is the vendor desk a case's page quotes: the first of
// the configuration that has the case, else the first with phones, else
// the first.
func firstVendorDesk(pol Policy, have map[string]bool) string {
	vendors := pol.desksWithRole(config.RoleVendor)
	for _, d := range vendors {
		if have[d.Name] {
			return d.Name
		}
	}
	for _, d := range vendors {
		if len(d.Phones) > 0 {
			return d.Name
		}
	}
	if len(vendors) > 0 {
		return vendors[0].Name
	}
	return ""
}

// pageIfDue enqueues the case's pending page when the vendor desk has
// returned its ticket ID, when the fallback time has passed, or at once
// when no vendor desk has the case. Exactly one page per pending page:
// the transition removes the pending mark in the same commit.
func (e *Engine) pageIfDue(ctx context.Context, pol Policy, c Case) {
	due, ok := c.Due[DuePage]
	if !ok {
		return
	}
	have, _, err := deskSet(ctx, e.st, c.ID)
	if err != nil {
		e.logger.Error("page", "case", c.ID, "err", err)
		return
	}
	vendor := firstVendorDesk(pol, have)
	ref := ""
	if have[vendor] {
		ref = c.DeskRefs[vendor]
	}
	now := e.now()
	if have[vendor] && ref == "" && now.Before(due) {
		return // wait for the vendor's ticket ID
	}
	inv := pol.device(c.Device, c.Serial)
	page := &Page{Region: inv.Contract.Region, VendorRef: ref}
	if d, ok := pol.desk(vendor); ok && vendorKind(c.Kind) {
		page.Phone = d.Phones[page.Region]
	}
	page.Text = pageText(c, page, have[vendor])
	pagers := pol.desksWithRole(config.RolePager)
	var paged Case
	paged, err = e.st.Transition(ctx, c.ID, func(c *Case) (Event, []Delivery, error) {
		if _, ok := c.Due[DuePage]; !ok || c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		delete(c.Due, DuePage)
		rows, err := outbox(pagers, after(*c, now), EventPage, page, "", now)
		note := page.Text
		if len(pagers) == 0 {
			note = "no desk with role pager is configured: nobody was paged. " + note
		}
		return Event{Type: EventPage, At: now, Actor: ActorAgent, Note: note,
			Data: eventData(map[string]any{"phone": page.Phone, "region": page.Region, "vendor_ref": page.VendorRef})}, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return
	}
	if err != nil {
		e.logger.Error("page", "case", c.ID, "err", err)
		return
	}
	e.logger.Info("severity-1 page queued", "case", paged.ID, "device", paged.Device, "vendor_ref", ref, "pagers", len(pagers))
	e.committed(ctx, EventPage)
}

// pageText is what the human on call reads: what broke, its impact, whom
// to call and which references to quote.
func pageText(c Case, p *Page, vendorHasCase bool) string {
	s := fmt.Sprintf("SEVERITY 1 %s: %s. Impact: %s.", c.ID, c.Summary, c.Impact)
	phone := ""
	switch {
	case p.Phone != "":
		phone = fmt.Sprintf(" on %s (%s)", p.Phone, orUnknown(p.Region))
	case vendorKind(c.Kind):
		phone = fmt.Sprintf(" (no vendor phone configured for region %s)", orUnknown(p.Region))
	}
	switch {
	case p.VendorRef != "":
		return s + fmt.Sprintf(" Call the vendor%s and quote vendor case %s; our case ID %s.", phone, p.VendorRef, c.ID)
	case vendorHasCase:
		return s + fmt.Sprintf(" Call the vendor%s: vendor reference pending; our case ID %s.", phone, c.ID)
	case c.Reason != "":
		return s + fmt.Sprintf(" No vendor case: %s; our case ID %s.", c.Reason, c.ID)
	}
	return s + fmt.Sprintf(" In-house (%s fault, no vendor case); our case ID %s.", c.Kind, c.ID)
}

// Describe implements prometheus.Collector.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) { e.m.describe(ch) }

// Collect implements prometheus.Collector: hsm_cases_open{severity,kind}
// as last read from the store (after each change and every
// PageCheckInterval, never per scrape) and hsm_case_events_total{event}.
func (e *Engine) Collect(ch chan<- prometheus.Metric) { e.m.collect(ch) }

// CloseCase closes a case as an operator (see the package function) and
// wakes the outbox worker.
func (e *Engine) CloseCase(ctx context.Context, id string, a Action) (Case, error) {
	c, err := CloseCase(ctx, e.st, *e.pol.Load(), id, e.action(a))
	return e.acted(ctx, c, err, EventClosed)
}

// CancelCase cancels a case as an operator and wakes the outbox worker.
func (e *Engine) CancelCase(ctx context.Context, id string, a Action) (Case, error) {
	c, err := CancelCase(ctx, e.st, *e.pol.Load(), id, e.action(a))
	return e.acted(ctx, c, err, EventCancelled)
}

// ApproveBundle releases a case's bundle as an operator and wakes the
// outbox worker.
func (e *Engine) ApproveBundle(ctx context.Context, id string, a Action) (Case, error) {
	c, err := ApproveBundle(ctx, e.st, *e.pol.Load(), id, e.action(a))
	return e.acted(ctx, c, err, EventBundleApproved)
}

// AddNote appends an operator's note to a case's log.
func (e *Engine) AddNote(ctx context.Context, id string, a Action) error {
	if err := AddNote(ctx, e.st, id, e.action(a)); err != nil {
		return err
	}
	e.m.events.WithLabelValues(EventNote).Inc()
	return nil
}

// action dates an operator action by the engine's clock.
func (e *Engine) action(a Action) Action {
	if a.At.IsZero() {
		a.At = e.now()
	}
	return a
}

func (e *Engine) acted(ctx context.Context, c Case, err error, evType string) (Case, error) {
	if err != nil {
		return c, err
	}
	e.committed(ctx, evType)
	return c, nil
}
