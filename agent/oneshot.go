package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// This file is what the command line (package agent/cli) asks of the agent
// when no daemon runs, or of the running daemon through its control socket.

// ValidateConfig decides whether a configuration file can run, with exactly
// the checks of start and reload (loadChecked), for `config check`. It
// returns the configuration and its warnings (files not usable yet that are
// read again when needed), or every problem at once.
func ValidateConfig(ctx context.Context, file string) (*config.Config, []error, error) {
	cc, err := loadChecked(ctx, file, checkOptions{})
	if err != nil {
		return nil, nil, err
	}
	return cc.cfg, cc.warnings, nil
}

// PollOnce polls every module of cfg once with a fresh worker (started
// with workerCommand, empty meaning this executable) and reports the
// devices in inventory order and the tokens outside the inventory. It
// never creates the state database; logger gets the warnings.
func PollOnce(ctx context.Context, cfg *config.Config, workerCommand []string, logger *slog.Logger) ([]DeviceReport, []UnexpectedReport, error) {
	coll, err := collector.New(cfg, collector.Options{
		Logger:        logger,
		WorkerCommand: workerCommand,
		Known:         readOnlySlots(ctx, cfg, logger),
		Follow:        readOnlyFollowed(ctx, cfg, logger),
	})
	if err != nil {
		return nil, nil, err
	}
	defer coll.Close()
	snap := coll.PollOnce(ctx, true)
	return Reports(snap), unexpectedReports(snap), nil
}

// OpenStore opens the state database of cfg, as the daemon does.
func OpenStore(cfg *config.Config) (*store.Store, error) {
	return openStore(cfg)
}

// RequestBundle asks the running daemon of cfg, through its control
// socket in state_dir, to build a bundle.
func RequestBundle(ctx context.Context, cfg *config.Config, serial string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sock := filepath.Join(cfg.StateDir, ControlSocketName)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/api/v1/bundles/"+url.PathEscape(serial), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("control socket %s: %w", sock, err)
	}
	defer resp.Body.Close()
	var body struct {
		Path  string `json:"path"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("agent answered %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(body.Error)
	}
	return body.Path, nil
}

// LocalBundle polls the device's module once (a worker started with
// workerCommand, empty meaning this executable) and builds a bundle from
// that, for `hsm-agent bundle` when no daemon answers.
func LocalBundle(ctx context.Context, cfg *config.Config, serial string, workerCommand []string) (string, error) {
	dev, ok := cfg.DeviceBySerial(serial)
	if !ok {
		return "", fmt.Errorf("no device with serial %q in %s", serial, cfg.File)
	}
	coll, err := collector.New(cfg, collector.Options{WorkerCommand: workerCommand})
	if err != nil {
		return "", err
	}
	defer coll.Close()
	coll.PollOnce(ctx, true)
	res, err := makeBundle(ctx, cfg, bundleSource{coll: coll, inUse: stateBundlesInUse(cfg)}, dev, nil, nil)
	return res.Path, err
}

// stateBundlesInUse lists the bundles the state DB's undelivered outbox
// rows reference, for the CLI (no daemon): none when the agent has never
// run (no DB), an error when the DB exists but cannot be read.
func stateBundlesInUse(cfg *config.Config) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		path := filepath.Join(cfg.StateDir, StateDBName)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		st, err := openStore(cfg)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return st.BundlesInUse(ctx)
	}
}
