package agent

import (
	"time"

	"github.com/hsm-agent/hsm-agent/collector"
)

// DeviceReport is one device as `check --json` and /api/v1/devices show it.
type DeviceReport struct {
	Device      string `json:"device"`
	Serial      string `json:"serial"`
	Module      string `json:"module"`
	Environment string `json:"environment"`
	Pool        string `json:"pool,omitempty"`
	Tier        string `json:"tier,omitempty"`
	State       string `json:"state"`
	Kind        string `json:"kind,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// ModuleWide is set when State is the module's (its library failed
	// before any token answered), not this device's own.
	ModuleWide        bool          `json:"module_wide,omitempty"`
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
			State: string(d.State), Kind: string(d.Kind), Reason: d.Reason, ModuleWide: d.ModuleWide,
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
