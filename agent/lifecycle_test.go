package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStopStepHonoursDeadline: a background part that does not return when
// cancelled cannot hang shutdown; its stop step gives up at the deadline
// and says so (issue 8).
func TestStopStepHonoursDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	stop := background(context.Background(), func(context.Context) error { <-block; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stop(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stop = %v, want the deadline error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stop step ignored the shutdown deadline")
	}
}
