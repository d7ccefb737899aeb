package collector

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// poll runs one probe of one module and returns the request with the
// result. It reports false when the result must be discarded: the prober
// was closed or ctx ended (shutdown, not a fault).
func (c *Collector) poll(ctx context.Context, r *moduleRunner, fresh bool) (probe.Request, probe.Result, bool) {
	c.mu.Lock()
	req := c.requestLocked(r.name, fresh)
	c.mu.Unlock()

	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	if r.closing.Load() || ctx.Err() != nil {
		return req, probe.Result{}, false
	}
	res := r.prober.Poll(ctx, req)
	if ctx.Err() != nil || r.closing.Load() {
		return req, probe.Result{}, false // cut short by shutdown: not a module fault
	}
	if res.Module == "" {
		res.Module = r.name
	}
	return req, res, true
}

// PollOnce polls every module once, concurrently, and returns the snapshot
// with all their results. fresh forces a fresh worker (fresh C_Initialize)
// for every module.
func (c *Collector) PollOnce(ctx context.Context, fresh bool) Snapshot {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.Snapshot()
	}
	runners := c.runnersLocked()
	c.mu.Unlock()

	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(func() {
			req, res, ok := c.poll(ctx, r, fresh)
			if !ok {
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if !r.retired {
				c.applyLocked(r, req, res)
			}
		})
	}
	wg.Wait()
	names := make([]string, len(runners))
	for i, r := range runners {
		names[i] = r.name
	}
	return c.publish(names)
}

// pollModule polls one module for Run and publishes its result.
func (c *Collector) pollModule(ctx context.Context, r *moduleRunner, fresh bool) {
	req, res, ok := c.poll(ctx, r, fresh)
	if !ok {
		return
	}
	c.mu.Lock()
	retired := r.retired
	if !retired {
		c.applyLocked(r, req, res)
	}
	c.mu.Unlock()
	if !retired {
		c.publish([]string{r.name})
	}
}

// publish stores a new snapshot and, once ready, hands it to OnPoll.
func (c *Collector) publish(polled []string) Snapshot {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	c.mu.Lock()
	s := c.storeLocked(polled)
	c.mu.Unlock()
	if s.Ready && c.onPoll != nil {
		c.onPoll(*s)
	}
	return *s
}

// Recheck schedules an extra poll of a module soon, in a fresh worker (fresh
// C_Initialize), as confirmation rechecks need. At most one recheck is
// pending per module; it runs as soon as Run's loop of that module is free.
// Unknown modules are ignored.
func (c *Collector) Recheck(module string) {
	c.mu.Lock()
	r := c.modules[module]
	c.mu.Unlock()
	if r == nil {
		c.logger.Debug("recheck of an unknown module ignored", "module", module)
		return
	}
	select {
	case r.recheck <- struct{}{}:
	default: // one already pending
	}
}

// Run polls every module every poll_interval until ctx is done, each module
// on its own schedule (a slow module does not delay the others), plus the
// rechecks asked for with Recheck. It returns nil when ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("collector: run after close")
	}
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("collector: already running")
	}
	c.runCtx = ctx
	for _, r := range c.modules {
		c.startLoopLocked(r)
	}
	c.mu.Unlock()

	// An inventory without modules still completes (empty) rounds, so that
	// readiness and watchdogs driven by OnPoll work.
	timer := time.NewTimer(0)
	defer timer.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-timer.C:
			c.mu.Lock()
			empty := len(c.modules) == 0
			interval := c.cfg.PollInterval
			c.mu.Unlock()
			if empty {
				c.publish([]string{})
			}
			timer.Reset(interval)
		}
	}

	c.mu.Lock()
	c.runCtx = nil
	c.mu.Unlock()
	c.loops.Wait()
	return nil
}

func (c *Collector) startLoopLocked(r *moduleRunner) {
	ctx, cancel := context.WithCancel(c.runCtx)
	r.stop = cancel
	r.done = make(chan struct{})
	done := r.done
	c.loops.Add(1)
	go func() {
		defer c.loops.Done()
		defer close(done)
		defer cancel()
		c.loop(ctx, r)
	}()
}

// loop is one module's schedule: a poll at once, then every poll_interval
// (start to start), and a fresh poll whenever a recheck is pending.
func (c *Collector) loop(ctx context.Context, r *moduleRunner) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.recheck:
			c.pollModule(ctx, r, true)
		case <-timer.C:
			start := time.Now()
			c.pollModule(ctx, r, false)
			c.mu.Lock()
			interval := c.cfg.PollInterval
			c.mu.Unlock()
			timer.Reset(max(0, time.Until(start.Add(interval))))
		}
	}
}
