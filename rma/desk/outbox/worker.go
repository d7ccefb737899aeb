// Package outbox is the outbox worker: the one retry layer of case event
// delivery. One loop per desk takes the desk's due rows from the store in
// queue order, sends each once through the desk (rma/desk), and records the
// outcome: delivered with its ticket ID, retried after a capped exponential
// backoff or the desk's Retry-After (itself capped), or parked. It also
// exports the delivery metrics.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// Store is what the worker needs of the store (*store.Store has it).
type Store interface {
	// DueDeliveries returns up to limit pending rows of desk whose
	// NextAttempt is at or before now, first queued first.
	DueDeliveries(ctx context.Context, desk string, now time.Time, limit int) ([]rma.Delivery, error)
	// RecordAttempt records one attempt's outcome on row id (and in the
	// case log); store.ErrNoChange if the row is no longer pending.
	RecordAttempt(ctx context.Context, id int64, a store.Attempt) error
	// OutboxCounts returns the pending and parked rows by desk.
	OutboxCounts(ctx context.Context) (map[string]store.OutboxCount, error)
}

// Defaults of Options.
const (
	DefaultPollInterval  = time.Second
	DefaultBatch         = 100
	DefaultRetryMin      = 10 * time.Second
	DefaultRetryMax      = 5 * time.Minute
	DefaultMaxRetryAfter = 5 * time.Minute
	// recordTimeout bounds recording an attempt, which is done even while
	// the worker stops (a delivered event must be marked delivered).
	recordTimeout = 10 * time.Second
)

// Options tune the outbox worker; zero values take the defaults.
type Options struct {
	// Logger gets one child per desk (attribute "desk").
	Logger *slog.Logger
	// PollInterval is how often each desk looks for due rows without a
	// Kick (rows may be queued by another process, e.g. the CLI).
	PollInterval time.Duration
	// Batch is how many due rows are fetched at once.
	Batch int
	// RetryMin and RetryMax bound the capped exponential backoff between
	// two attempts of one row: about RetryMin*2^(attempts-1), at most
	// RetryMax, with jitter in the upper half. A store that cannot record
	// an answered attempt holds the desk on the same schedule (by failures
	// in a row), and the event is not sent again meanwhile.
	RetryMin, RetryMax time.Duration
	// MaxRetryAfter caps the wait a desk asks for with Retry-After.
	MaxRetryAfter time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Scrub removes secrets from every event's free text before it is
	// sent (nil: sent as stored).
	Scrub desk.Scrub
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Worker delivers the outbox: one loop per desk takes that desk's due rows
// in queue order, sends each, and records the outcome (delivered with the
// ticket ID, retry at a later time, or parked). A desk that fails with a
// retryable error is held until the failed row's next attempt, so its
// events keep their order and an outage costs one attempt per backoff, not
// one per row; other desks go on. The Worker is also the
// prometheus.Collector of the delivery metrics.
type Worker struct {
	st    Store
	opts  Options
	loops []*deskLoop
	m     *metrics

	runMu   sync.Mutex
	running bool
}

// NewWorker returns a worker for desks over st. Desks with the same name
// are an error of Run.
func NewWorker(st Store, desks []desk.Desk, opts Options) *Worker {
	opts = opts.withDefaults()
	w := &Worker{st: st, opts: opts}
	names := make([]string, 0, len(desks))
	for _, d := range desks {
		names = append(names, d.Name())
		l := &deskLoop{w: w, desk: d, name: d.Name(), kick: make(chan struct{}, 1),
			log: opts.Logger.With("desk", d.Name())}
		if r, ok := d.(desk.RateLimited); ok && r.RatePerMinute() > 0 {
			l.limiter = rate.NewLimiter(rate.Limit(float64(r.RatePerMinute())/60), 1)
		}
		w.loops = append(w.loops, l)
	}
	w.m = newMetrics(st, names, opts.Logger)
	return w
}

// Run delivers until ctx is cancelled, then returns nil once every desk's
// loop has stopped. An attempt in flight at cancellation is either recorded
// (its answer came) or left pending (it is sent again, with the same
// idempotency key, by the next run). Run may be called once at a time.
func (w *Worker) Run(ctx context.Context) error {
	seen := map[string]bool{}
	for _, l := range w.loops {
		if seen[l.name] {
			return fmt.Errorf("desk %q is configured twice; desk names must be unique", l.name)
		}
		seen[l.name] = true
	}
	w.runMu.Lock()
	if w.running {
		w.runMu.Unlock()
		return errors.New("outbox worker is already running")
	}
	w.running = true
	w.runMu.Unlock()
	defer func() {
		w.runMu.Lock()
		w.running = false
		w.runMu.Unlock()
	}()

	var wg sync.WaitGroup
	for _, l := range w.loops {
		wg.Go(func() { l.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Kick makes every desk look for due rows now (the engine calls it after
// queuing rows). It never blocks. A desk held after a failure stays held.
func (w *Worker) Kick() {
	for _, l := range w.loops {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// deskLoop is the delivery loop of one desk. Its fields are used by its
// own goroutine only.
type deskLoop struct {
	w       *Worker
	desk    desk.Desk
	name    string
	log     *slog.Logger
	kick    chan struct{}
	limiter *rate.Limiter

	holdUntil    time.Time // no attempt before this (after a retryable failure)
	failing      bool      // in a failure streak (logged once)
	failures     int       // attempts failed in the streak
	storeFailing bool      // the store failed (logged once)
	storeErrs    int       // consecutive store failures (their backoff)
	// unrecorded is an attempt the desk answered but the store could not
	// record (disk full, read-only DB): it is recorded before anything
	// else is sent, so the event is not sent again meanwhile.
	unrecorded *unrecorded
}

// unrecorded is a finished attempt waiting to be recorded.
type unrecorded struct {
	row rma.Delivery
	a   store.Attempt
}

func (l *deskLoop) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		wait := l.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
			timer.Stop() // Go 1.23+: no stale tick after Stop or Reset
		case <-timer.C:
		}
	}
}

// pass sends the due rows of one batch and says how long to wait before
// the next pass: 0 after a full batch, the hold after a retryable failure,
// else the poll interval.
func (l *deskLoop) pass(ctx context.Context) time.Duration {
	o := l.w.opts
	now := o.Now()
	if now.Before(l.holdUntil) {
		return l.holdUntil.Sub(now)
	}
	if u := l.unrecorded; u != nil {
		if hold, ok := l.record(ctx, u.row, u.a); !ok {
			return hold
		}
		l.unrecorded = nil
		l.log.Info("delivery attempt recorded once the store worked again", "case", u.row.CaseID,
			"sequence", u.row.Seq, "outcome", u.a.Outcome(), "ticket", u.a.TicketID)
		if !u.a.Delivered && !u.a.Parked && now.Before(u.a.NextAttempt) {
			l.holdUntil = u.a.NextAttempt // the desk failed too: keep its order
			return u.a.NextAttempt.Sub(now)
		}
	}
	rows, err := l.w.st.DueDeliveries(ctx, l.name, now, o.Batch)
	if err != nil {
		if ctx.Err() == nil {
			l.storeError("read due deliveries", err)
		}
		return o.PollInterval
	}
	l.storeOK()
	for _, row := range rows {
		if l.limiter != nil {
			if err := l.limiter.Wait(ctx); err != nil {
				return 0 // cancelled
			}
		}
		next, ok := l.attempt(ctx, row)
		if !ok {
			return max(next.Sub(o.Now()), o.PollInterval) // cancelled, or the store failed
		}
		if !next.IsZero() {
			l.holdUntil = next
			return max(next.Sub(o.Now()), time.Millisecond)
		}
	}
	if len(rows) == o.Batch {
		return 0
	}
	return o.PollInterval
}

// attempt sends one row and records the outcome. next is set when the row
// is to be retried (the desk is held until then); ok is false when the
// outcome was not recorded (cancelled, or the store failed: then next is
// the end of the store's backoff).
func (l *deskLoop) attempt(ctx context.Context, row rma.Delivery) (next time.Time, ok bool) {
	o := l.w.opts
	log := l.log.With("case", row.CaseID, "sequence", row.Seq)
	start := o.Now()
	var (
		ticket    string
		retryable bool
		err       error
	)
	msg, berr := desk.NewScrubbedMessage(row, start, o.Scrub)
	switch {
	case errors.Is(berr, desk.ErrBundleMissing):
		log.Warn("bundle file is gone (pruned or removed); sending the event without it", "err", berr)
		fallthrough
	case berr == nil:
		ticket, retryable, err = l.desk.Send(ctx, msg)
	default:
		err, retryable = berr, desk.ReasonOf(berr) != desk.ReasonInvalid
	}
	if err != nil && ctx.Err() != nil {
		// Stopping: the attempt did not finish, so it is not recorded;
		// the row stays pending and goes out again after a restart.
		return time.Time{}, false
	}
	end := o.Now()
	a := store.Attempt{At: end}
	reason := desk.Reason(desk.ResultSuccess)
	switch {
	case err == nil:
		a.Delivered, a.TicketID = true, ticket
	default:
		reason = desk.ReasonOf(err)
		a.Err = err.Error()
		var de *desk.Error
		if errors.As(err, &de) {
			a.Status = de.Status
		}
		if retryable {
			a.NextAttempt = end.Add(l.retryDelay(row, err))
		} else {
			a.Parked = true
		}
	}
	l.w.m.observe(l.name, string(reason), end)

	if _, ok := l.record(ctx, row, a); !ok {
		// The desk has answered; sending again before the answer is
		// recorded would repeat the event. Keep it for the next pass.
		l.unrecorded = &unrecorded{row: row, a: a}
		return l.holdUntil, false
	}

	switch {
	case a.Delivered:
		if l.failing {
			l.log.Info("desk delivers again", "failed_attempts", l.failures)
			l.failing, l.failures = false, 0
		}
		log.Info("case event delivered", "ticket", ticket, "attempt", row.Attempts+1)
	case a.Parked:
		log.Error("desk refused the case event; it is parked (kept, shown as failed, not retried)",
			"reason", reason, "status", a.Status, "err", err)
	default:
		l.failures++
		if !l.failing {
			l.failing = true
			l.log.Warn("desk delivery failing; retrying with backoff (logged again when it recovers)",
				"case", row.CaseID, "sequence", row.Seq, "reason", reason, "status", a.Status,
				"next_attempt", a.NextAttempt, "err", err)
		} else {
			log.Debug("desk delivery still failing", "reason", reason, "next_attempt", a.NextAttempt, "err", err)
		}
		return a.NextAttempt, true
	}
	return time.Time{}, true
}

// retryDelay is the Retry-After the desk asked for (capped), else capped
// exponential backoff by the row's attempt count.
func (l *deskLoop) retryDelay(row rma.Delivery, err error) time.Duration {
	o := l.w.opts
	var de *desk.Error
	if errors.As(err, &de) && de.RetryAfter > 0 {
		return min(de.RetryAfter, o.MaxRetryAfter)
	}
	return Backoff(o.RetryMin, o.RetryMax, row.Attempts)
}

// record writes attempt a of row to the store. When the store fails the
// desk is held with the same capped exponential backoff as a desk error
// (by the number of store failures in a row) and hold is that wait; ok is
// false. A row settled meanwhile (ErrNoChange) counts as recorded.
func (l *deskLoop) record(ctx context.Context, row rma.Delivery, a store.Attempt) (hold time.Duration, ok bool) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	err := l.w.st.RecordAttempt(rctx, row.ID, a)
	cancel()
	switch {
	case errors.Is(err, store.ErrNoChange):
		l.log.Debug("outbox row was settled meanwhile (another agent process or an operator)",
			"case", row.CaseID, "sequence", row.Seq, "err", err)
	case err != nil:
		o := l.w.opts
		hold = Backoff(o.RetryMin, o.RetryMax, l.storeErrs)
		l.storeErrs++
		l.holdUntil = o.Now().Add(hold)
		l.storeError("record a delivery attempt (case "+row.CaseID+", outcome "+a.Outcome()+")", err)
		return hold, false
	}
	l.storeOK()
	return 0, true
}

func (l *deskLoop) storeError(op string, err error) {
	if !l.storeFailing {
		l.storeFailing = true
		l.log.Error("outbox store failing; the desk waits and tries again (logged again when it recovers)", "op", op, "err", err)
		return
	}
	l.log.Debug("outbox store still failing", "op", op, "err", err)
}

func (l *deskLoop) storeOK() {
	l.storeErrs = 0
	if l.storeFailing {
		l.storeFailing = false
		l.log.Info("outbox store works again")
	}
}
