package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/bundle"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	deskoutbox "github.com/hsm-agent/hsm-agent/rma/desk/outbox"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// StateDBName is the state database's file name inside state_dir.
const StateDBName = "hsm-agent.db"

// BundleDirName is the directory of diagnostics bundles inside state_dir.
const BundleDirName = "bundles"

// openStore opens the state database of cfg with an error that names the
// config field to change when the location is wrong.
func openStore(cfg *config.Config) (*store.Store, error) {
	path := filepath.Join(cfg.StateDir, StateDBName)
	st, err := store.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state database (state_dir: %s in %s): %w", cfg.StateDir, cfg.File, err)
	}
	return st, nil
}

// outbox runs the desk worker of one desk configuration; a reload that
// changes the desks replaces it.
type outbox struct {
	desks  []config.Desk
	worker *deskoutbox.Worker
	cancel context.CancelFunc
	done   chan error
}

// deliveries owns the current outbox worker. It is the Prometheus
// collector of the outbox metrics, registered once, and hands every
// scrape to the current worker: swapping workers at a reload registers
// nothing, so it cannot fail half-way.
type deliveries struct {
	logger *slog.Logger
	store  *store.Store
	scrub  desk.Scrub // the ticket text scrubber (Agent.scrubText)

	mu      sync.Mutex
	current *outbox
}

// Describe implements prometheus.Collector. It describes nothing (an
// unchecked collector): the desks, and so the series, change at reloads.
func (d *deliveries) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector with the current worker's metrics.
func (d *deliveries) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	cur := d.current
	d.mu.Unlock()
	if cur != nil {
		cur.worker.Collect(ch)
	}
}

// start starts the worker of desks (built from cfgDesks), replacing the
// running one. It cannot fail: the desks were built (secrets read) by
// loadChecked before.
func (d *deliveries) start(ctx context.Context, cfgDesks []config.Desk, desks []desk.Desk) {
	w := deskoutbox.NewWorker(d.store, desks, deskoutbox.Options{Logger: d.logger.With("component", "outbox"), Scrub: d.scrub})
	ob := &outbox{desks: cfgDesks, worker: w, done: make(chan error, 1)}
	var wctx context.Context
	wctx, ob.cancel = context.WithCancel(ctx)
	go func() { ob.done <- w.Run(wctx) }()

	d.mu.Lock()
	old := d.current
	d.current = ob
	d.mu.Unlock()
	if old != nil {
		if err := old.stop(context.Background()); err != nil {
			d.logger.Warn("stopping the outbox worker of the previous desks", "err", err)
		}
	}
}

// changed reports whether desks differ from the running worker's.
func (d *deliveries) changed(desks []config.Desk) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current == nil || !reflect.DeepEqual(d.current.desks, desks)
}

// kick wakes the running worker.
func (d *deliveries) kick() {
	d.mu.Lock()
	cur := d.current
	d.mu.Unlock()
	if cur != nil {
		cur.worker.Kick()
	}
}

// stop stops the running worker, waiting at most until ctx ends; pending
// rows stay in the store.
func (d *deliveries) stop(ctx context.Context) error {
	d.mu.Lock()
	cur := d.current
	d.current = nil
	d.mu.Unlock()
	if cur == nil {
		return nil
	}
	return cur.stop(ctx)
}

func (o *outbox) stop(ctx context.Context) error {
	o.cancel()
	select {
	case err := <-o.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox worker did not stop: %w", context.Cause(ctx))
	}
}

// bundleSource is what a bundle needs beyond the configuration: the
// collector's view of the device and the agent's recent log lines.
type bundleSource struct {
	coll *collector.Collector // nil outside the daemon
	logs *bundle.LogBuffer    // nil outside the daemon
	// inUse lists the bundles undelivered outbox rows reference, which
	// pruning keeps; nil when there is no state DB yet.
	inUse func(context.Context) ([]string, error)
}

// makeBundle builds (and prunes) a diagnostics bundle for one device and,
// when c is set, its case.
func makeBundle(ctx context.Context, cfg *config.Config, src bundleSource, dev config.Device, c *rma.Case, events []rma.Event) (bundle.Result, error) {
	in := bundle.Input{
		Device:       dev,
		Case:         c,
		Events:       events,
		Commands:     cfg.Diagnostics.Commands,
		AgentVersion: Version,
		Secrets:      knownSecrets(cfg),
	}
	if m, ok := cfg.Module(dev.Module); ok {
		in.Library = m.Library
	}
	// The bundle goes to every desk of the case: it names no desk's
	// settings (URLs, files), which are none of a vendor's business.
	summary := *cfg
	summary.Desks = nil
	if y, err := summary.Redacted(); err == nil {
		in.ConfigYAML = y
	} else {
		in.ConfigYAML = []byte(fmt.Sprintf("# configuration could not be rendered: %v\n", err))
	}
	if src.coll != nil {
		if st, ok := src.coll.Snapshot().Device(dev.Name); ok {
			in.Token = Reports(collector.Snapshot{Devices: []collector.DeviceStatus{st}})[0]
		}
		in.History = src.coll.History(dev.Name)
	}
	if src.logs != nil {
		in.Logs = src.logs.Lines(dev.Name)
	}
	dir := filepath.Join(cfg.StateDir, BundleDirName)
	res, err := bundle.Build(ctx, dir, in, bundle.Options{MaxBytes: cfg.Diagnostics.MaxBundleBytes, Redact: cfg.Diagnostics.Redact})
	if err != nil {
		return res, err
	}
	var keep []string
	if src.inUse != nil {
		if keep, err = src.inUse(ctx); err != nil {
			// Not knowing which bundles a desk still needs, delete none.
			return res, fmt.Errorf("prune bundles of %s: skipped, the outbox could not be read: %w", dev.Name, err)
		}
	}
	if err := bundle.Prune(dir, dev.Name, cfg.Diagnostics.Retention, keep...); err != nil {
		return res, fmt.Errorf("prune bundles of %s: %w", dev.Name, err)
	}
	return res, nil
}

// scrubText is the ticket text scrubber of the outbox: the bundles' rules
// with the running configuration's secrets.
func (a *Agent) scrubText(text string) string {
	cfg := a.config()
	s, err := bundle.NewScrubber(knownSecrets(cfg), cfg.Diagnostics.Redact)
	if err != nil { // the patterns were validated at load; keep the built-in rules
		s, _ = bundle.NewScrubber(knownSecrets(cfg), nil)
	}
	return s.Scrub(text)
}

// knownSecrets reads every secret the configuration points at (PIN files,
// desk secrets and tokens, from systemd credentials first) and takes the
// values (4 characters or more) of secret-looking module environment
// variables, so bundles and
// tickets can scrub them. Unreadable ones are skipped: they cannot leak
// either.
func knownSecrets(cfg *config.Config) []config.Secret {
	var out []config.Secret
	for _, m := range cfg.Modules {
		for k, v := range m.Env {
			// Shorter values ("1", "yes") are settings, not secrets,
			// and would scrub every such word.
			if len(v) >= 4 && config.SensitiveEnv(k) {
				out = append(out, config.Secret(v))
			}
		}
	}
	add := func(cred, path string) {
		if path == "" {
			return
		}
		if s, _, err := config.ReadCredential(cred, path); err == nil {
			out = append(out, s)
		}
	}
	for _, d := range cfg.Devices {
		add(config.CredentialName(config.CredentialPIN, d.Name), d.PINFile)
	}
	for _, d := range cfg.Desks {
		add(config.CredentialName(config.CredentialDeskSecret, d.Name), d.SecretFile)
		add(config.CredentialName(config.CredentialDeskToken, d.Name), d.TokenFile)
		add(config.CredentialName(config.CredentialDeskPassword, d.Name), d.PasswordFile)
		add(config.CredentialName(config.CredentialDeskRoutingKey, d.Name), d.RoutingKeyFile)
	}
	add(CredentialAPIToken, cfg.API.TokenFile)
	return out
}
