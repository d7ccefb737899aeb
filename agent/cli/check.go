package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
)

// Exit codes of `hsm-agent check` (monitoring-plugin convention).
const (
	ExitOK       = 0
	ExitDegraded = 1
	ExitFailed   = 2
	ExitUnknown  = 3
)

// ExitCode maps device states to the check exit code: 2 if any device is
// failed, missing or unresponsive, or crashed its module's library on its
// own (a module error of that token alone); else 3 if any could not be
// checked (its module failed as a whole, never polled); else 1 if any is
// degraded; else 0.
func ExitCode(reports []agent.DeviceReport) int {
	code := ExitOK
	worse := func(c int) {
		rank := map[int]int{ExitOK: 0, ExitDegraded: 1, ExitUnknown: 2, ExitFailed: 3}
		if rank[c] > rank[code] {
			code = c
		}
	}
	for _, r := range reports {
		switch collector.State(r.State) {
		case collector.StateHealthy:
		case collector.StateDegraded:
			worse(ExitDegraded)
		case collector.StateFailed, collector.StateMissing, collector.StateUnresponsive:
			worse(ExitFailed)
		case collector.StateModuleError:
			if r.ModuleWide {
				worse(ExitUnknown)
			} else {
				worse(ExitFailed)
			}
		default:
			worse(ExitUnknown)
		}
	}
	return code
}

// Check runs `check [--config FILE] [--json]`: it polls every module once
// with a fresh worker, prints a table or a JSON array of devices and
// returns the exit code (see ExitCode).
func Check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", DefaultConfigFile, "configuration `FILE`")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if err := fs.Parse(args); err != nil {
		return ExitUnknown
	}
	cfg, err := config.Load(*configFile)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return ExitUnknown
	}
	return CheckConfig(ctx, cfg, nil, *asJSON, stdout, stderr)
}

// CheckConfig is Check on a loaded configuration, with probe workers
// started by workerCommand (empty: this executable).
func CheckConfig(ctx context.Context, cfg *config.Config, workerCommand []string, asJSON bool, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reports, unexpected, err := agent.PollOnce(ctx, cfg, workerCommand, logger)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent check: %v\n", err)
		return ExitUnknown
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			fmt.Fprintf(stderr, "hsm-agent check: %v\n", err)
			return ExitUnknown
		}
	} else {
		printTable(stdout, reports, unexpected)
		printDiscovered(stdout, cfg.File, unexpected)
	}
	return ExitCode(reports)
}

func printTable(w io.Writer, reports []agent.DeviceReport, unexpected []agent.UnexpectedReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSERIAL\tMODULE\tSTATE\tFIRMWARE\tREASON")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Device, r.Serial, r.Module, r.State, r.Firmware, r.Reason)
	}
	for _, u := range unexpected {
		fmt.Fprintf(tw, "(unexpected)\t%s\t%s\t-\t\ttoken %q is not in the inventory\n", u.Serial, u.Module, u.Label)
	}
	_ = tw.Flush()
}
