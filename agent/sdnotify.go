package agent

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// notifier speaks the sd_notify protocol to systemd when $NOTIFY_SOCKET is
// set (Type=notify units) and does nothing otherwise.
type notifier struct {
	socket string

	mu        sync.Mutex
	lastAlive time.Time
}

func newNotifier() *notifier {
	return &notifier{socket: os.Getenv("NOTIFY_SOCKET"), lastAlive: time.Now()}
}

// send writes one datagram to the notify socket; errors are ignored as
// systemd itself would report a missing READY.
func (n *notifier) send(state string) {
	if n.socket == "" {
		return
	}
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	if n.socket[0] == '@' { // abstract namespace
		addr.Name = "\x00" + n.socket[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}

func (n *notifier) ready()     { n.send("READY=1\nSTATUS=polling") }
func (n *notifier) reloading() { n.send("RELOADING=1") }
func (n *notifier) stopping()  { n.send("STOPPING=1") }

// alive records that the poll loop completed a round.
func (n *notifier) alive() {
	n.mu.Lock()
	n.lastAlive = time.Now()
	n.mu.Unlock()
}

// startWatchdog pings WATCHDOG=1 at half the interval systemd asked for,
// but only while healthy(lastAlive) holds, so a stuck poll loop gets the
// daemon restarted. It returns a function that stops the pings.
func (n *notifier) startWatchdog(logger *slog.Logger, healthy func(lastAlive time.Time) bool) func() {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if n.socket == "" || err != nil || usec <= 0 {
		return func() {}
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n.mu.Lock()
				last := n.lastAlive
				n.mu.Unlock()
				if healthy(last) {
					n.send("WATCHDOG=1")
					warned = false
				} else if !warned {
					logger.Error("poll loop stalled, withholding the watchdog ping", "last_round", last)
					warned = true
				}
			}
		}
	}()
	return func() { close(done) }
}
