// Package config holds hsm-agent's configuration: the YAML types, strict
// decoding with line numbers, defaults, cross-field validation and the Secret
// type that never prints its value.
package config

import "time"

// Environments a device may belong to.
const (
	EnvProduction    = "production"
	EnvNonProduction = "non-production"
	EnvDevelopment   = "development"
)

// Contract tiers (support-model.md section 1).
const (
	TierPremiumPlus = "premium-plus"
	TierPremium     = "premium"
	TierStandard    = "standard"
)

// Config is the whole agent configuration as loaded from one YAML file.
type Config struct {
	// StateDir holds the agent's durable state (SQLite store, bundles).
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// Listen is the HTTP listen address for /metrics and the health endpoints.
	Listen string `yaml:"listen" json:"listen"`
	// PollInterval is the time between two polls of every module.
	PollInterval time.Duration `yaml:"poll_interval" json:"poll_interval"`
	// RecheckInterval is the time between confirmation re-probes of a faulty device.
	RecheckInterval time.Duration `yaml:"recheck_interval" json:"recheck_interval"`
	// ProbeTimeout is the deadline of one probe of one module.
	ProbeTimeout time.Duration `yaml:"probe_timeout" json:"probe_timeout"`
	// ReinitInterval is how often a fresh worker re-runs C_Initialize.
	ReinitInterval time.Duration `yaml:"reinit_interval" json:"reinit_interval"`
	// SelftestInterval is the minimum time between two logged-in self-tests of a device.
	SelftestInterval time.Duration `yaml:"selftest_interval" json:"selftest_interval"`
	// SlowThreshold marks a check slower than this as degraded.
	SlowThreshold time.Duration `yaml:"slow_threshold" json:"slow_threshold"`
	// ConfirmPolls is how many consecutive failing polls confirm a fault.
	ConfirmPolls int `yaml:"confirm_polls" json:"confirm_polls"`

	Modules   []Module            `yaml:"modules" json:"modules"`
	Pools     []Pool              `yaml:"pools" json:"pools"`
	Devices   []Device            `yaml:"devices" json:"devices"`
	Firmware  Firmware            `yaml:"firmware" json:"firmware"`
	Desks     []Desk              `yaml:"desks" json:"desks"`
	Calendars map[string]Calendar `yaml:"calendars" json:"calendars,omitempty"`

	// File is the path the configuration was loaded from (not part of the YAML).
	File string `yaml:"-" json:"-"`
}

// Module is one PKCS#11 library, probed by its own child worker.
type Module struct {
	Name    string            `yaml:"name" json:"name"`
	Library string            `yaml:"library" json:"library"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
}

// Pool groups devices that serve the same workload.
type Pool struct {
	Name       string `yaml:"name" json:"name"`
	MinHealthy int    `yaml:"min_healthy" json:"min_healthy"`
}

// Device is one HSM of the inventory, matched by serial number.
type Device struct {
	Name         string   `yaml:"name" json:"name"`
	Serial       string   `yaml:"serial" json:"serial"`
	Module       string   `yaml:"module" json:"module"`
	Environment  string   `yaml:"environment" json:"environment"`
	Pool         string   `yaml:"pool" json:"pool,omitempty"`
	Commissioned *bool    `yaml:"commissioned" json:"commissioned,omitempty"`
	Contract     Contract `yaml:"contract" json:"contract"`
	Site         Site     `yaml:"site" json:"site"`
	// PINFile enables the logged-in self-test; the PIN itself is read at use.
	PINFile string `yaml:"pin_file" json:"pin_file,omitempty"`
}

// IsCommissioned reports whether the device is commissioned (default true).
func (d Device) IsCommissioned() bool { return d.Commissioned == nil || *d.Commissioned }

// Contract is a device's support contract.
type Contract struct {
	ID      string `yaml:"id" json:"id"`
	Tier    string `yaml:"tier" json:"tier"`
	Expires Date   `yaml:"expires" json:"expires"`
	Region  string `yaml:"region" json:"region"`
}

// Site is where a device is installed, for RMA shipping.
type Site struct {
	Address string `yaml:"address" json:"address,omitempty"`
	Contact string `yaml:"contact" json:"contact,omitempty"`
	Phone   string `yaml:"phone" json:"phone,omitempty"`
}

// Firmware is the fleet's firmware policy.
type Firmware struct {
	Minimum  string   `yaml:"minimum" json:"minimum,omitempty"`
	Approved []string `yaml:"approved" json:"approved,omitempty"`
}

// Desk is a destination for case events. Type-specific settings sit beside
// the common ones; the ones a type does not use must be empty.
type Desk struct {
	Name   string `yaml:"name" json:"name"`
	Type   string `yaml:"type" json:"type"`
	Role   string `yaml:"role" json:"role"`
	Upload string `yaml:"upload" json:"upload,omitempty"`

	// URL is the endpoint of HTTP desks (webhook and later API desks).
	URL string `yaml:"url" json:"url,omitempty"`
	// SecretFile holds the webhook signing secret.
	SecretFile string `yaml:"secret_file" json:"secret_file,omitempty"`
	// TokenFile holds an API token for desks that need one.
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
	// Dir is the spool directory of a spool desk.
	Dir string `yaml:"dir" json:"dir,omitempty"`
}

// Calendar lists one region's public holidays.
type Calendar struct {
	Holidays []Date `yaml:"holidays" json:"holidays"`
}
