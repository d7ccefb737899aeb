// Package service is `hsm-agent service ...`: it installs and controls the
// agent as a system service, and runs the daemon under the Windows service
// manager (Run).
//
// This file holds the platform-neutral part; the Linux side (our hardened
// systemd unit) is in service_linux.go, Windows and macOS
// (github.com/kardianos/service defaults) in service_other.go. The package
// uses only the standard library, kardianos/service and package systemd, so
// it compiles for every GOOS even where package agent needs cgo.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/kardianos/service"
)

// Service identity, the same on every platform.
const (
	serviceName        = "hsm-agent"
	serviceDisplayName = "HSM health agent"
	serviceDescription = "HSM health agent (PKCS#11 health checks, Prometheus metrics, support cases)"
)

// Exit codes of `hsm-agent service status`, after the LSB init-script
// convention: 0 running, 3 not running, 4 status unknown (here: not installed).
const (
	StatusRunning      = 0
	StatusStopped      = 3
	StatusNotInstalled = 4
)

const serviceUsage = `usage: hsm-agent service install|uninstall|start|stop|status [flags]

  install    install hsm-agent as a system service (Linux: the hardened systemd
             unit, sysusers and tmpfiles snippets; enabled, not started)
  uninstall  remove what install wrote (configuration, state, secrets and the
             hsm-agent user are kept)
  start, stop
  status     prints the state; exit 0 running, 3 stopped, 4 not installed, 1 error

flags:
`

// serviceOptions are the flags of `hsm-agent service`.
type serviceOptions struct {
	action string
	// config is the configuration file the service runs with.
	config string
	// exe is the binary the service runs; empty means this executable.
	exe string
	// root, when set (Linux only), writes the files under this directory
	// and calls neither systemctl nor the running service manager.
	root string
	// systemdVersion is the target's systemd version (with root); 0 means
	// ask `systemctl --version` (live) or assume a current systemd (root).
	systemdVersion int
}

// Main runs `hsm-agent service ACTION [flags]` (args start with ACTION)
// and returns the exit code: 0 done, 1 failed, 2 usage error; status uses
// Status*. On Linux it installs hsm-agent's own hardened systemd unit
// (package systemd) through kardianos/service, plus the sysusers and
// tmpfiles snippets and, on systemd older than
// systemd.CredentialDirMinVersion, the credentials compat drop-in; --root DIR
// writes all of them under DIR (image builds) without calling systemctl.
// On Windows and macOS it uses kardianos/service's own service definition,
// running `hsm-agent run --config FILE`.
func Main(args []string, stdout, stderr io.Writer) int {
	opts, code := parseServiceArgs(args, stderr)
	if code >= 0 {
		return code
	}
	return platformService(opts, stdout, stderr)
}

// parseServiceArgs parses the action and flags; code is -1 when parsing
// succeeded, else the exit code to return.
func parseServiceArgs(args []string, stderr io.Writer) (opts serviceOptions, code int) {
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, serviceUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.config, "config", defaultServiceConfig(), "configuration `FILE` the service runs with")
	fs.StringVar(&opts.exe, "exe", "", "the hsm-agent `BINARY` the service runs, as the service will see it (default: this executable)")
	if runtime.GOOS == "linux" {
		fs.StringVar(&opts.root, "root", "", "install or uninstall under `DIR` (an image being built) without calling systemctl")
		fs.IntVar(&opts.systemdVersion, "systemd-version", 0, "with --root: the image's systemd `VERSION`, to decide on the credentials compat drop-in (default: assume a current systemd)")
	}
	if len(args) == 0 {
		fs.Usage()
		return opts, 2
	}
	opts.action = args[0]
	switch opts.action {
	case "install", "uninstall", "start", "stop", "status":
	case "help", "-h", "-help", "--help":
		fs.Usage()
		return opts, 0
	default:
		fmt.Fprintf(stderr, "hsm-agent service: unknown action %q\n", opts.action)
		fs.Usage()
		return opts, 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, 0
		}
		return opts, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hsm-agent service %s: unexpected argument %q\n", opts.action, fs.Arg(0))
		return opts, 2
	}
	if opts.root != "" && opts.action != "install" && opts.action != "uninstall" {
		fmt.Fprintf(stderr, "hsm-agent service %s: --root applies to install and uninstall only (an image's service is not running)\n", opts.action)
		return opts, 2
	}
	if opts.systemdVersion != 0 && opts.root == "" {
		fmt.Fprintln(stderr, "hsm-agent service: --systemd-version needs --root (on a live host the version comes from systemctl --version)")
		return opts, 2
	}
	return opts, -1
}

// kardianosConfig is the kardianos/service definition of hsm-agent: exe run
// --config config.
func kardianosConfig(exe, config string) *service.Config {
	return &service.Config{
		Name:        serviceName,
		DisplayName: serviceDisplayName,
		Description: serviceDescription,
		Executable:  exe,
		Arguments:   []string{"run", "--config", config},
	}
}

// controlOnly is the service.Interface for a process that only installs or
// controls the service and never runs it.
type controlOnly struct{}

func (controlOnly) Start(service.Service) error {
	return errors.New("hsm-agent service: not a runnable program")
}
func (controlOnly) Stop(service.Service) error { return nil }

// printStatus reports s's status on stdout and returns the status exit code.
func printStatus(s service.Service, unit string, stdout, stderr io.Writer) int {
	st, err := s.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		fmt.Fprintf(stdout, "%s: not installed (hsm-agent service install)\n", unit)
		return StatusNotInstalled
	case err != nil && strings.Contains(err.Error(), "failed state"):
		fmt.Fprintf(stdout, "%s: failed (see its logs; systemd: journalctl -u %s)\n", unit, serviceName)
		return StatusStopped
	case err != nil:
		fmt.Fprintf(stderr, "hsm-agent service status: %s: %v\n", unit, err)
		return 1
	case st == service.StatusRunning:
		fmt.Fprintf(stdout, "%s: running\n", unit)
		return StatusRunning
	case st == service.StatusStopped:
		fmt.Fprintf(stdout, "%s: stopped (hsm-agent service start)\n", unit)
		return StatusStopped
	default:
		fmt.Fprintf(stderr, "hsm-agent service status: %s: the service manager reports an unknown status\n", unit)
		return 1
	}
}

// Run runs the daemon function run under the operating system's
// service manager when that manager started this process, and otherwise
// simply calls run(ctx). Only Windows needs this: its service control
// manager must be answered through kardianos/service, which cancels run's
// context when the service is stopped (and stops the service when run
// returns by itself). Under systemd and launchd the daemon is a plain
// process stopped by SIGTERM, which ctx already carries.
func Run(ctx context.Context, run func(context.Context) error) error {
	if runtime.GOOS != "windows" || service.Interactive() {
		return run(ctx)
	}
	p := &managedProgram{parent: ctx, run: run}
	s, err := service.New(p, &service.Config{Name: serviceName})
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	p.svc = s
	if err := s.Run(); err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	return p.err
}

// managedProgram adapts a daemon function to kardianos' Start/Stop.
type managedProgram struct {
	parent context.Context
	run    func(context.Context) error
	svc    service.Service

	cancel context.CancelFunc
	done   chan struct{}
	err    error // written before done is closed
}

func (p *managedProgram) Start(service.Service) error {
	ctx, cancel := context.WithCancel(p.parent)
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		p.err = p.run(ctx)
		if ctx.Err() == nil {
			// The daemon ended by itself (e.g. a bad configuration): ask
			// the service manager to stop the service, which calls Stop.
			go func() { _ = p.svc.Stop() }()
		}
	}()
	return nil
}

func (p *managedProgram) Stop(service.Service) error {
	p.cancel()
	<-p.done
	return nil
}
