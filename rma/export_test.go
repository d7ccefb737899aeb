package rma

import "context"

// run runs fn on the engine's goroutine and waits for it; the engine must
// be running.
func (e *Engine) run(fn func(context.Context)) {
	done := make(chan struct{})
	for !e.enqueue(func(ctx context.Context) { fn(ctx); close(done) }) {
		// The queue is full: the engine drains it.
	}
	<-done
}

// ConfirmPolls returns the confirm_polls the engine's tracker applies.
func (e *Engine) ConfirmPolls() int {
	var n int
	e.run(func(context.Context) { n = e.tracker.pol.ConfirmPolls })
	return n
}

// Flush waits until the engine processed everything queued before it.
func (e *Engine) Flush() { e.run(func(context.Context) {}) }

// CheckPagesNow runs the pending-page check at once (instead of waiting for
// PageCheckInterval) and waits for it.
func (e *Engine) CheckPagesNow() { e.run(e.checkPages) }

// CheckContractsNow runs the contract check at once and waits for it.
func (e *Engine) CheckContractsNow() { e.run(e.checkContracts) }

// CheckAutoCloseNow runs the auto-close check at once and waits for it.
func (e *Engine) CheckAutoCloseNow() { e.run(e.checkAutoClose) }
