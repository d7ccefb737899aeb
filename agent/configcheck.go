package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/probe"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// checkedConfig is a configuration that passed every check deciding
// whether the agent runs it.
type checkedConfig struct {
	cfg   *config.Config
	desks []desk.Desk // built from cfg.Desks, secrets read
	// warnings are files that are not usable yet but are read again when
	// needed (PIN files), and secret files others may read.
	warnings []error
}

// checkOptions are what the caller of loadChecked knows about probing.
type checkOptions struct {
	// workerCommand starts a probe worker; empty means this executable's.
	workerCommand []string
	logger        *slog.Logger
}

// loadChecked is the one function that decides whether a configuration
// file can run, for `config check`, start and reload alike: the file
// loads and validates (config.Load), every desk can be built with its
// secrets (NewDesks), and every module library loads in a fresh probe
// worker. Every problem is returned at once.
func loadChecked(ctx context.Context, file string, o checkOptions) (*checkedConfig, error) {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	var errs []error
	desks, err := NewDesks(cfg.Desks, o.logger.With("component", "desk"), DeskOptions{Version: Version})
	if err != nil {
		errs = append(errs, fmt.Errorf("desks in %s: %w", file, err))
	}
	errs = append(errs, checkLibraries(ctx, cfg, o)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var warnings []error
	for _, w := range cfg.CheckFiles() {
		var fe *config.FieldError
		if errors.As(w, &fe) && strings.HasPrefix(fe.Path, "modules[") {
			continue // the library loaded: checkLibraries is the real test
		}
		warnings = append(warnings, w)
	}
	return &checkedConfig{cfg: cfg, desks: desks, warnings: warnings}, nil
}

// checkLibraries loads every module's library in a fresh probe worker, all
// modules at once, and reports those that cannot be loaded (a missing file,
// not a PKCS#11 library). A library that loads but whose module reports a
// fault (C_Initialize fails, a token hangs) passes: that is the HSM's state,
// which polling reports, not a configuration error.
func checkLibraries(ctx context.Context, cfg *config.Config, o checkOptions) []error {
	errs := make([]error, len(cfg.Modules))
	var wg sync.WaitGroup
	for i, m := range cfg.Modules {
		wg.Go(func() {
			p := probe.New(probe.Options{
				Module:  m.Name,
				Library: m.Library,
				Env:     maps.Clone(m.Env),
				Command: slices.Clone(o.workerCommand),
				Timeout: cfg.ProbeTimeout,
			}, o.logger.With("component", "config-check"))
			defer p.Close()
			res := p.Poll(ctx, probe.Request{Fresh: true})
			if res.LoadFailed {
				errs[i] = cfg.ErrorAt(fmt.Sprintf("modules[%d].library", i),
					res.ModuleError+"; set the path of the vendor's PKCS#11 library, or install it")
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}
