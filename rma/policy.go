package rma

import (
	"maps"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// Policy is what the case engine takes from the configuration, as plain
// data: confirmation and flapping, reopening, rechecks, the pools' minimum,
// the modules' libraries (for descriptions), the desks' roles and phones,
// and the inventory (contracts, environments). PolicyFrom builds it; the
// engine, routing, severity and descriptions read nothing else of the
// configuration.
type Policy struct {
	// Tracker is confirm_polls, flap_limit and flap_window.
	Tracker TrackerPolicy
	// RecheckInterval is how soon a module with a pending fault is polled
	// again in a fresh worker.
	RecheckInterval time.Duration
	// ReopenWindow is how long after its close a case reopens when its
	// fault comes back, instead of a new case.
	ReopenWindow time.Duration
	// Libraries maps module names to their PKCS#11 library path.
	Libraries map[string]string
	// MinHealthy maps pool names to their min_healthy.
	MinHealthy map[string]int
	// Desks are the configured desks in configuration order.
	Desks []Desk
	// Devices is the inventory in configuration order.
	Devices []config.Device
	// RequireAttest is rma.require_zeroize_attestation: the event that
	// ships a faulty unit needs attest zeroized.
	RequireAttest bool
	// AutoCloseAfter is auto_close_after: how long a cleared case stays
	// healthy before it closes (flow none) or is cancelled (not confirmed).
	AutoCloseAfter time.Duration
	// Calendars are the regions' business calendars (calendars.<region>
	// over the defaults of support-model.md section 1), by region.
	Calendars map[string]*calendar.Calendar
	// ReturnDays is rma.return_days (advance replacement: days to return
	// the faulty unit).
	ReturnDays int
}

// Desk is what routing needs of one configured desk.
type Desk struct {
	Name string
	// Role is config.RoleVendor, RoleInternal or RolePager.
	Role string
	// ApproveUpload is set for upload: approve (bundles are withheld from
	// the desk until an operator approves them).
	ApproveUpload bool
	// Phones maps regions to the vendor's phone number.
	Phones map[string]string
}

// PolicyFrom takes the case engine's policy from a configuration. It is
// the one place the engine's inputs are read from config.Config.
func PolicyFrom(cfg *config.Config) Policy {
	p := Policy{
		Tracker:         TrackerPolicy{ConfirmPolls: cfg.ConfirmPolls, FlapLimit: cfg.FlapLimit, FlapWindow: cfg.FlapWindow},
		RecheckInterval: cfg.RecheckInterval,
		ReopenWindow:    cfg.ReopenWindow,
		Libraries:       make(map[string]string, len(cfg.Modules)),
		MinHealthy:      make(map[string]int, len(cfg.Pools)),
		Devices:         cfg.Devices,
		RequireAttest:   cfg.RMA.RequireZeroizeAttestation,
		AutoCloseAfter:  cfg.AutoCloseAfter,
		Calendars:       calendars(cfg.Calendars),
		ReturnDays:      cfg.RMA.ReturnDays,
	}
	for _, m := range cfg.Modules {
		p.Libraries[m.Name] = m.Library
	}
	for _, pl := range cfg.Pools {
		p.MinHealthy[pl.Name] = pl.MinHealthy
	}
	for _, d := range cfg.Desks {
		p.Desks = append(p.Desks, Desk{Name: d.Name, Role: d.Role, ApproveUpload: d.Upload == config.UploadApprove, Phones: maps.Clone(d.Phones)})
	}
	return p
}

// calendars builds every region's calendar from calendars.<region>. The
// configuration was validated with the same parser (config.Validate); a
// region whose settings still fail falls back to its defaults.
func calendars(cfg map[string]config.Calendar) map[string]*calendar.Calendar {
	out, err := NewCalendars(cfg)
	if err != nil { // config.Validate refuses such a file: the defaults stand in
		out, _ = NewCalendars(nil)
	}
	return out
}

// calendar returns the business calendar of a region; nil for none.
func (p Policy) calendar(region string) *calendar.Calendar { return p.Calendars[region] }

// device returns the inventory device of a case: by name when its serial
// is the case's, else by serial (a device renamed since); zero if none.
func (p Policy) device(name, serial string) config.Device {
	for _, d := range p.Devices {
		if d.Name == name && d.Serial == serial {
			return d
		}
	}
	serial = strings.TrimSpace(serial)
	for _, d := range p.Devices {
		if d.Serial == serial {
			return d
		}
	}
	return config.Device{}
}

// desksWithRole lists the desks of a role in configuration order.
func (p Policy) desksWithRole(role string) []Desk {
	var out []Desk
	for _, d := range p.Desks {
		if d.Role == role {
			out = append(out, d)
		}
	}
	return out
}

// desk returns the named desk.
func (p Policy) desk(name string) (Desk, bool) {
	for _, d := range p.Desks {
		if d.Name == name {
			return d, true
		}
	}
	return Desk{}, false
}
