package agent

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// shutdownTimeout bounds the whole ordered shutdown. systemd's
// TimeoutStopSec must be longer.
const shutdownTimeout = 15 * time.Second

// shutdown runs the stop steps in reverse start order under one deadline
// and joins their errors. Every step honours the deadline: one that does
// not finish in time is reported and left behind, and the next runs.
func (a *Agent) shutdown(stops []func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		errs = append(errs, stops[i](sctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		a.logger.Error("shutdown", "err", err)
	}
	return err
}

// withDeadline runs a stop step that takes no context, waiting for it at
// most until ctx ends.
func withDeadline(ctx context.Context, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: not done by the shutdown deadline: %w", what, context.Cause(ctx))
	}
}

// background runs fn in a goroutine until the returned stop function
// cancels it; stop waits for fn, at most until its context ends, and
// returns its error (context.Canceled is the expected end, not an error).
func background(ctx context.Context, fn func(context.Context) error) func(context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	return func(sctx context.Context) error {
		cancel()
		return withDeadline(sctx, "stop", func() error {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
}
