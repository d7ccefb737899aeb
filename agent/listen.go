package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Limits of the HTTP server. A scrape, a health check or the CLI needs one
// short connection; these keep a flood of idle or slow connections from
// holding the descriptors the poll loop needs for its probe workers, their
// pipes, the state database and the desks.
const (
	// MaxHTTPConns caps the connections served at once; further clients
	// wait in the kernel's accept queue, holding no descriptor of ours.
	MaxHTTPConns = 128
	// HTTPReadHeaderTimeout bounds the wait for a request's headers.
	HTTPReadHeaderTimeout = 10 * time.Second
	// HTTPReadTimeout bounds reading a whole request.
	HTTPReadTimeout = 30 * time.Second
	// HTTPIdleTimeout closes a keep-alive connection idle for this long.
	HTTPIdleTimeout = 60 * time.Second
)

// ControlSocketName is the unix socket in state_dir that serves the local
// control calls (POST /api/v1/bundles/{serial}) to the CLI. Only the
// service's user and group can connect (mode 0660 inside state_dir); a
// browser cannot reach it, so neither CSRF nor DNS rebinding can.
const ControlSocketName = "hsm-agent.sock"

// newHTTPServer returns the server for h with the limits above; its own
// error log (TLS handshakes, bad requests) goes to logger at WARN.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: HTTPReadHeaderTimeout,
		ReadTimeout:       HTTPReadTimeout,
		IdleTimeout:       HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// limitListener accepts at most n connections at once and logs accept
// errors at ERROR, once until an accept succeeds again.
type limitListener struct {
	net.Listener
	sem    chan struct{}
	done   chan struct{} // closed by Close
	close  sync.Once
	logger *slog.Logger
	mu     sync.Mutex
	failed bool // the last accept failed and was logged
}

// limitConns wraps ln; see limitListener.
func limitConns(ln net.Listener, n int, logger *slog.Logger) net.Listener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{}), logger: logger}
}

// Close closes the listener and ends a wait for a free slot.
func (l *limitListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		<-l.sem
		if !l.failed && !errors.Is(err, net.ErrClosed) {
			l.logger.Error("HTTP server cannot accept connections; polling continues", "addr", l.Addr().String(), "err", err)
			l.failed = true
		}
		return nil, err
	}
	if l.failed {
		l.logger.Info("HTTP server accepts connections again", "addr", l.Addr().String())
		l.failed = false
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

// limitedConn frees its listener slot once, on Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its slot.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// listenControl listens on the control socket in stateDir (mode 0660). A
// socket file left by a dead agent is replaced; one another agent still
// answers on is an error.
func listenControl(stateDir string) (net.Listener, error) {
	path := filepath.Join(stateDir, ControlSocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another hsm-agent answers on it; stop it or give this one another state_dir", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s (state_dir): %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// controlConnKey marks the context of requests that came through the
// control socket.
type controlConnKey struct{}

// markControl is the ConnContext of the control socket's server.
func markControl(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, controlConnKey{}, true)
}

// viaControlSocket reports whether r came through the control socket.
func viaControlSocket(r *http.Request) bool {
	v, _ := r.Context().Value(controlConnKey{}).(bool)
	return v
}
