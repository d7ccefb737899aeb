package cli

import (
	"os"
	"os/signal"
	"syscall"
)

// HangupReloads returns a channel that asks for a configuration reload on
// every SIGHUP, for `run` and `demo` alike; requests that arrive while one
// is pending coalesce into it (a reload is never queued twice, never lost).
func HangupReloads() <-chan struct{} {
	reload := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	return reload
}
