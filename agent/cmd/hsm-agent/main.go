// Command hsm-agent watches a fleet of HSMs over PKCS#11, exports their
// health to Prometheus and runs their support lifecycle. main only turns
// flags into options and signals into a context and dispatches: the daemon
// is package agent, the other subcommands package agent/cli, the service
// installer package agent/service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/agent/cli"
	"github.com/hsm-agent/hsm-agent/agent/service"
	"github.com/hsm-agent/hsm-agent/collector/p11"
)

const defaultConfig = cli.DefaultConfigFile

const usage = `hsm-agent watches HSMs over PKCS#11 and runs their support lifecycle.

Usage:
  hsm-agent run [--config FILE] [--web.listen-address ADDR] [--web.config.file FILE]
                [--web.enable-lifecycle] [--log.level LEVEL] [--log.format logfmt|json]
                                    foreground daemon (what the service runs)
  hsm-agent check [--config FILE] [--json]
                                    one poll of everything; exit 0 all healthy,
                                    1 degraded, 2 failed/missing/unresponsive, 3 could not check
  hsm-agent config check FILE       validate a configuration file and exit 0 (valid) or 1
  hsm-agent cases [--all] [--json]   list open (or all) cases
  hsm-agent cases show ID [--json]   one case with its event log and deliveries
  hsm-agent case ID EVENT [--rma N] [--tracking T] [--at TIME] [--note S] [--attest zeroized]
                                    a flow event (confirm, authorize, ship, receive, install,
                                    return) or an action (close, cancel, approve, note)
  hsm-agent report sla [--since DATE] [--until DATE] [--json|--csv]
                                    every vendor target per case: due, done, met or
                                    missed, time elapsed, service-credit eligibility
  hsm-agent bundle SERIAL [-o FILE]  build a diagnostics bundle for a device now
  hsm-agent desk test NAME          send a clearly marked test event to a desk
  hsm-agent outbox [--json]         list parked outbox rows (desk, case, sequence, attempts, last error)
  hsm-agent outbox retry ID|--all   requeue parked rows; the running agent sends them again
  hsm-agent service install|uninstall|start|stop|status [--config FILE] [--exe BINARY] [--root DIR]
                                    install or control the system service
  hsm-agent demo [--dir DIR]        create a 3-token SoftHSM2 fleet and run the agent on it
  hsm-agent demo fail|clear ...     inject or clear a fault in the demo fleet (see "demo --help")
  hsm-agent version                 print the version
  hsm-agent probe-worker            internal: the child process that loads a PKCS#11 library

Secrets (PINs, tokens) are read from files or systemd credentials, never from flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "probe-worker":
		return p11.Main(rest, stderr)
	case "run":
		return runDaemon(rest, stderr)
	case "check":
		return cli.Check(signalContext(), rest, stdout, stderr)
	case "config":
		if len(rest) != 2 || rest[0] != "check" {
			fmt.Fprintln(stderr, "usage: hsm-agent config check FILE")
			return 2
		}
		return cli.ConfigCheck(rest[1], stdout, stderr)
	case "cases":
		return cli.Cases(signalContext(), rest, stdout, stderr)
	case "case":
		return cli.CaseAction(signalContext(), rest, stdout, stderr)
	case "report":
		return cli.Report(signalContext(), rest, stdout, stderr)
	case "bundle":
		return cli.Bundle(signalContext(), rest, stdout, stderr)
	case "desk":
		return cli.DeskTest(signalContext(), rest, stdout, stderr)
	case "outbox":
		return cli.Outbox(signalContext(), rest, stdout, stderr)
	case "service":
		return service.Main(rest, stdout, stderr)
	case "demo":
		return cli.Demo(signalContext(), rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, agent.VersionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hsm-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func runDaemon(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", defaultConfig, "configuration `FILE`")
	fs.StringVar(configFile, "config.file", defaultConfig, "configuration `FILE` (the same as --config)")
	webConfig := fs.String("web.config.file", "", "exporter-toolkit web configuration `FILE` (TLS, basic auth) for the HTTP endpoints")
	listen := fs.String("web.listen-address", "", "`ADDRESS` to serve /metrics and the API on; overrides the configuration's listen")
	lifecycle := fs.Bool("web.enable-lifecycle", false, "serve POST /-/reload (a reload, as SIGHUP)")
	level := fs.String("log.level", "info", "log level: debug, info, warn, error")
	format := fs.String("log.format", "", "log `FORMAT`: logfmt or json (default: logfmt on a terminal, json under systemd)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "hsm-agent: --log.level %q: use debug, info, warn or error\n", *level)
		return 2
	}
	logger, err := agent.NewLoggerFormat(stderr, lvl, *format)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent: %v\n", err)
		return 2
	}
	reload := cli.HangupReloads()
	opts := agent.Options{
		ConfigFile:      *configFile,
		WebConfigFile:   *webConfig,
		Listen:          *listen,
		EnableLifecycle: *lifecycle,
		Logger:          logger,
		Reload:          reload,
	}
	// service.Run answers the Windows service manager; elsewhere it just runs.
	err = service.Run(signalContext(), func(ctx context.Context) error { return agent.Run(ctx, opts) })
	if err != nil {
		logger.Error("hsm-agent stopped", "err", err)
		if errors.Is(err, agent.ErrCannotStart) {
			return agent.ExitNoRestart
		}
		return 1
	}
	return 0
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() context.Context {
	ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return ctx
}
