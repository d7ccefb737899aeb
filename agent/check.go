package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

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

// DeviceReport is one device as `check --json` and /api/v1/devices show it.
type DeviceReport struct {
	Device            string        `json:"device"`
	Serial            string        `json:"serial"`
	Module            string        `json:"module"`
	Environment       string        `json:"environment"`
	Pool              string        `json:"pool,omitempty"`
	Tier              string        `json:"tier,omitempty"`
	State             string        `json:"state"`
	Kind              string        `json:"kind,omitempty"`
	Reason            string        `json:"reason,omitempty"`
	Label             string        `json:"label,omitempty"`
	Model             string        `json:"model,omitempty"`
	Manufacturer      string        `json:"manufacturer,omitempty"`
	Firmware          string        `json:"firmware,omitempty"`
	Hardware          string        `json:"hardware,omitempty"`
	FirmwareCompliant *bool         `json:"firmware_compliant,omitempty"`
	SlotID            *uint         `json:"slot_id,omitempty"`
	Flags             []string      `json:"flags,omitempty"`
	Checks            []CheckReport `json:"checks,omitempty"`
	Since             string        `json:"since,omitempty"`
	LastSuccess       string        `json:"last_success,omitempty"`
}

// CheckReport is one timed check of a device.
type CheckReport struct {
	Name            string  `json:"name"`
	OK              bool    `json:"ok"`
	DurationSeconds float64 `json:"duration_seconds"`
	Error           string  `json:"error,omitempty"`
}

// UnexpectedReport is a token not in the inventory.
type UnexpectedReport struct {
	Module string `json:"module"`
	Serial string `json:"serial"`
	Label  string `json:"label"`
	SlotID uint   `json:"slot_id"`
}

// Reports turns a snapshot into per-device reports in inventory order.
func Reports(snap collector.Snapshot) []DeviceReport {
	out := make([]DeviceReport, 0, len(snap.Devices))
	for _, d := range snap.Devices {
		r := DeviceReport{
			Device: d.Device, Serial: d.Serial, Module: d.Module,
			Environment: d.Inventory.Environment, Pool: d.Inventory.Pool, Tier: d.Inventory.Contract.Tier,
			State: string(d.State), Kind: string(d.Kind), Reason: d.Reason,
			Since: timeString(d.Since), LastSuccess: timeString(d.LastSuccess),
		}
		if r.State == "" {
			r.State = "unknown"
		}
		if t := d.Token; t != nil {
			r.Label, r.Model, r.Manufacturer = t.Label, t.Model, t.Manufacturer
			r.Firmware, r.Hardware, r.Flags = t.Firmware, t.Hardware, t.Flags
			compliant, slot := d.FirmwareCompliant, t.SlotID
			r.FirmwareCompliant, r.SlotID = &compliant, &slot
		}
		for _, c := range d.Checks {
			r.Checks = append(r.Checks, CheckReport{Name: c.Name, OK: c.OK, DurationSeconds: c.Duration.Seconds(), Error: c.Error})
		}
		out = append(out, r)
	}
	return out
}

func unexpectedReports(snap collector.Snapshot) []UnexpectedReport {
	var out []UnexpectedReport
	for _, u := range snap.Unexpected {
		out = append(out, UnexpectedReport{Module: u.Module, Serial: u.Token.Serial, Label: u.Token.Label, SlotID: u.Token.SlotID})
	}
	return out
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// ExitCode maps device states to the check exit code: 2 if any device is
// failed, missing or unresponsive; else 3 if any could not be checked
// (module error, never polled); else 1 if any is degraded; else 0.
func ExitCode(reports []DeviceReport) int {
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
		default:
			worse(ExitUnknown)
		}
	}
	return code
}

// Check polls every module once with a fresh worker, prints a table or a
// JSON array of devices and returns the exit code (see ExitCode).
func Check(ctx context.Context, configFile string, asJSON bool, stdout, stderr io.Writer) int {
	cfg, err := config.Load(configFile)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return ExitUnknown
	}
	return checkConfig(ctx, cfg, nil, asJSON, stdout, stderr)
}

func checkConfig(ctx context.Context, cfg *config.Config, workerCommand []string, asJSON bool, stdout, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	coll, err := collector.New(cfg, collector.Options{
		Logger:        logger,
		WorkerCommand: workerCommand,
		Known:         readOnlySlots(ctx, cfg, logger),
	})
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent check: %v\n", err)
		return ExitUnknown
	}
	defer coll.Close()
	snap := coll.PollOnce(ctx, true)
	reports := Reports(snap)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			fmt.Fprintf(stderr, "hsm-agent check: %v\n", err)
			return ExitUnknown
		}
	} else {
		printTable(stdout, reports, unexpectedReports(snap))
		printDiscovered(stdout, cfg.File, unexpectedReports(snap))
	}
	return ExitCode(reports)
}

func printTable(w io.Writer, reports []DeviceReport, unexpected []UnexpectedReport) {
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
