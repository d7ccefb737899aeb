// Package config holds hsm-agent's configuration: the YAML types, strict
// decoding with line numbers, defaults, cross-field validation and the Secret
// type that never prints its value.
package config

import (
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

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

// Regions of the vendor's support offices (support-model.md section 1); also
// the keys of Config.Calendars.
const (
	RegionEMEA     = "emea"
	RegionAPAC     = "apac"
	RegionAmericas = "americas"
)

// Desk roles: who a desk reaches.
const (
	RoleVendor   = "vendor"
	RoleInternal = "internal"
	RolePager    = "pager"
)

// Upload policies of a desk (support-model.md section 6).
const (
	UploadAuto    = "auto"    // bundles go out with the case event
	UploadApprove = "approve" // a bundle waits for an operator's approval
)

// Desk types known to this version; deskTypes in validate.go says what each needs.
const (
	DeskWebhook      = "webhook"
	DeskSpool        = "spool"
	DeskRT           = "rt"           // Request Tracker 5 REST2 (rma/desk/rt)
	DeskJira         = "jira"         // Jira Cloud, Data Center or Service Management (rma/desk/jira)
	DeskPagerDuty    = "pagerduty"    // PagerDuty Events API v2 (rma/desk/pagerduty)
	DeskZendesk      = "zendesk"      // Zendesk Support (rma/desk/zendesk)
	DeskServiceNow   = "servicenow"   // ServiceNow incidents (rma/desk/servicenow)
	DeskEmail        = "email"        // SMTP, one thread per case (rma/desk/email)
	DeskAlertmanager = "alertmanager" // cases as alerts on /api/v2/alerts (rma/desk/alertmanager)
)

// Defaults applied to settings the file leaves out.
const (
	DefaultStateDir         = "/var/lib/hsm-agent"
	DefaultListen           = "127.0.0.1:9842"
	DefaultPollInterval     = 15 * time.Second
	DefaultRecheckInterval  = 2 * time.Second
	DefaultProbeTimeout     = 10 * time.Second
	DefaultReinitInterval   = 5 * time.Minute
	DefaultSelftestInterval = 10 * time.Minute
	DefaultSlowThreshold    = 2 * time.Second
	DefaultConfirmPolls     = 3
	DefaultFlapLimit        = 3
	DefaultFlapWindow       = time.Hour
	DefaultReopenWindow     = 7 * 24 * time.Hour
	DefaultMaxBundleBytes   = 20 << 20 // 20 MiB
	DefaultRetention        = 10
	DefaultDeskTimeout      = 10 * time.Second // per delivery attempt of an HTTP desk
	DefaultCommandTimeout   = 30 * time.Second // per diagnostics command
	DefaultReturnDays       = 30               // advance replacement: days to return the faulty unit
	DefaultAutoCloseAfter   = time.Hour        // continuous health before a cleared case closes by itself
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

	// FlapLimit and FlapWindow hold a fault that confirms, clears and returns
	// more than FlapLimit times within FlapWindow on its one case.
	FlapLimit  int           `yaml:"flap_limit" json:"flap_limit"`
	FlapWindow time.Duration `yaml:"flap_window" json:"flap_window"`
	// ReopenWindow: the same fault after a case closed within this window
	// reopens that case instead of opening a new one.
	ReopenWindow time.Duration `yaml:"reopen_window" json:"reopen_window"`
	// Diagnostics configures the diagnostics bundles attached to cases.
	Diagnostics Diagnostics `yaml:"diagnostics" json:"diagnostics"`
	// RMA holds the hardware-return settings.
	RMA RMA `yaml:"rma" json:"rma"`
	// AutoCloseAfter is how long a device must stay healthy before a
	// cleared flow-none case closes, or a hardware case the vendor has not
	// confirmed is cancelled, by itself.
	AutoCloseAfter time.Duration `yaml:"auto_close_after" json:"auto_close_after"`
	// API configures the case API (/api/v1/cases/{id}/events).
	API API `yaml:"api" json:"api"`

	// File is the path the configuration was loaded from (not part of the YAML).
	File string `yaml:"-" json:"-"`

	// lines maps field paths such as "devices[1].contract.tier" to their
	// line in File; nil for a Config built in code. A pointer, so that
	// printing a Config does not print the table.
	lines *lineTable
}

// lineTable maps field paths to lines of the configuration file.
type lineTable struct{ byPath map[string]int }

// Default returns a Config holding every default and no modules, devices,
// pools or desks. Parse starts from it, so settings the file leaves out keep
// these values. Defaults of list items (a desk's timeout, a diagnostics
// command's timeout) are set by Parse for the items the file defines.
func Default() *Config {
	c := &Config{StateDir: DefaultStateDir, Listen: DefaultListen, ConfirmPolls: DefaultConfirmPolls,
		FlapLimit:   DefaultFlapLimit,
		Diagnostics: Diagnostics{MaxBundleBytes: DefaultMaxBundleBytes, Retention: DefaultRetention},
		RMA:         RMA{ReturnDays: DefaultReturnDays, RequireZeroizeAttestation: true}}
	for _, d := range c.durations() {
		*d.value = d.def
	}
	return c
}

// durationSetting is one duration field with its YAML name and default.
type durationSetting struct {
	name  string
	value *time.Duration
	def   time.Duration
}

// durations lists the duration settings in file order: the one place that
// ties their names to their defaults.
func (c *Config) durations() []durationSetting {
	return []durationSetting{
		{"poll_interval", &c.PollInterval, DefaultPollInterval},
		{"recheck_interval", &c.RecheckInterval, DefaultRecheckInterval},
		{"probe_timeout", &c.ProbeTimeout, DefaultProbeTimeout},
		{"reinit_interval", &c.ReinitInterval, DefaultReinitInterval},
		{"selftest_interval", &c.SelftestInterval, DefaultSelftestInterval},
		{"slow_threshold", &c.SlowThreshold, DefaultSlowThreshold},
		{"flap_window", &c.FlapWindow, DefaultFlapWindow},
		{"reopen_window", &c.ReopenWindow, DefaultReopenWindow},
		{"auto_close_after", &c.AutoCloseAfter, DefaultAutoCloseAfter},
	}
}

// Device returns (a copy of) the device with the given inventory name.
func (c *Config) Device(name string) (Device, bool) {
	for _, d := range c.Devices {
		if d.Name == name {
			return d, true
		}
	}
	return Device{}, false
}

// DeviceBySerial returns (a copy of) the device with the given serial
// number. Blanks around serial (PKCS#11 pads serials with spaces) are ignored.
func (c *Config) DeviceBySerial(serial string) (Device, bool) {
	serial = strings.TrimSpace(serial)
	for _, d := range c.Devices {
		if d.Serial == serial {
			return d, true
		}
	}
	return Device{}, false
}

// Module returns (a copy of) the module with the given name.
func (c *Config) Module(name string) (Module, bool) {
	for _, m := range c.Modules {
		if m.Name == name {
			return m, true
		}
	}
	return Module{}, false
}

// Pool returns (a copy of) the pool with the given name.
func (c *Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
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

// Contract is a device's support contract. An empty Contract means the
// device has none: its faults go to internal desks only.
type Contract struct {
	ID      string `yaml:"id" json:"id"`
	Tier    string `yaml:"tier" json:"tier"`
	Expires Date   `yaml:"expires" json:"expires"`
	Region  string `yaml:"region" json:"region"`
}

// HasContract reports whether the device has a support contract (a tier).
func (c Contract) HasContract() bool { return c.Tier != "" }

// Site is where a device is installed, for RMA shipping.
type Site struct {
	Address string `yaml:"address" json:"address,omitempty"`
	Contact string `yaml:"contact" json:"contact,omitempty"`
	Phone   string `yaml:"phone" json:"phone,omitempty"`
	// Country is the site's ISO 3166-1 alpha-2 code ("GB"); a vendor phone
	// line for the country wins over the region's.
	Country string `yaml:"country" json:"country,omitempty"`
}

// Firmware is the fleet's firmware policy.
type Firmware struct {
	Minimum  string   `yaml:"minimum" json:"minimum,omitempty"`
	Approved []string `yaml:"approved" json:"approved,omitempty"`
	// EndOfLife lists versions the vendor no longer services: a device
	// running one gets a severity-3 firmware case (support-model.md section 7).
	EndOfLife []string `yaml:"end_of_life" json:"end_of_life,omitempty"`
}

// Desk is a destination for case events. Type-specific settings sit beside
// the common ones; the ones a type does not use must be empty.
type Desk struct {
	Name string `yaml:"name" json:"name"`
	Type string `yaml:"type" json:"type"`
	Role string `yaml:"role" json:"role"`
	// Upload is auto or approve; Parse sets auto where the file leaves it out.
	Upload string `yaml:"upload" json:"upload,omitempty"`

	// URL is the endpoint of HTTP desks (webhook and later API desks).
	URL string `yaml:"url" json:"url,omitempty"`
	// SecretFile holds the webhook signing secret.
	SecretFile string `yaml:"secret_file" json:"secret_file,omitempty"`
	// TokenFile holds an API token for desks that need one.
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
	// Dir is the spool directory of a spool desk.
	Dir string `yaml:"dir" json:"dir,omitempty"`
	// Phones are the vendor's support phone numbers by region (emea, apac,
	// americas) or by ISO 3166 country code ("AU"), put into pages so that
	// someone calls; vendor desks. They override the built-in nshield lines.
	Phones map[string]string `yaml:"phones" json:"phones,omitempty"`
	// Timeout bounds one delivery attempt of an HTTP desk; Parse sets
	// DefaultDeskTimeout where a webhook desk leaves it out.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// RatePerMinute caps deliveries to this desk (0 = no limit).
	RatePerMinute int `yaml:"rate_per_minute" json:"rate_per_minute,omitempty"`

	// rt desk (Request Tracker 5 REST2): the queue tickets go to, the
	// user of basic auth (with PasswordFile; else TokenFile), and the
	// custom field that carries the dedup key (default: a subject tag).
	// Username and PasswordFile are also servicenow's basic auth, and Email
	// (below) zendesk's login ("{email}/token:{token_file}").
	Queue        string `yaml:"queue" json:"queue,omitempty"`
	Username     string `yaml:"username" json:"username,omitempty"`
	PasswordFile string `yaml:"password_file" json:"password_file,omitempty"`
	DedupField   string `yaml:"dedup_field" json:"dedup_field,omitempty"`

	// jira desk: the variant (JiraCloud, JiraDataCenter,
	// JiraServiceManagement), the project and issue type of cloud and
	// datacenter issues, the Atlassian account e-mail of cloud's basic auth
	// (with TokenFile; without it TokenFile is a Data Center PAT), the
	// service desk and request type of servicemanagement requests, and the
	// Jira priority name by case severity (default Highest, High, Medium,
	// Low for 1-4).
	Variant       string         `yaml:"variant" json:"variant,omitempty"`
	Project       string         `yaml:"project" json:"project,omitempty"`
	IssueType     string         `yaml:"issue_type" json:"issue_type,omitempty"`
	Email         string         `yaml:"email" json:"email,omitempty"`
	ServiceDeskID string         `yaml:"service_desk_id" json:"service_desk_id,omitempty"`
	RequestTypeID string         `yaml:"request_type_id" json:"request_type_id,omitempty"`
	Priorities    map[int]string `yaml:"priorities" json:"priorities,omitempty"`

	// pagerduty desk: the file holding the Events API v2 routing key
	// (URL defaults to DefaultPagerDutyURL).
	RoutingKeyFile string `yaml:"routing_key_file" json:"routing_key_file,omitempty"`

	// servicenow: the incidents' assignment group (basic auth with
	// Username + PasswordFile, or an OAuth bearer token in TokenFile).
	AssignmentGroup string `yaml:"assignment_group" json:"assignment_group,omitempty"`

	// email desk (Username and PasswordFile above are its SMTP AUTH): SMTP is the relay's host:port; TLS is starttls
	// (default), implicit or none; From and To are the envelope and header
	// addresses; MaxAttachmentBytes caps the attached bundle (default
	// DefaultMaxAttachmentBytes); CAFile holds PEM CA certificates to trust
	// for the relay instead of the system's.
	SMTP               string   `yaml:"smtp" json:"smtp,omitempty"`
	TLS                string   `yaml:"tls" json:"tls,omitempty"`
	From               string   `yaml:"from" json:"from,omitempty"`
	To                 []string `yaml:"to" json:"to,omitempty"`
	MaxAttachmentBytes int64    `yaml:"max_attachment_bytes" json:"max_attachment_bytes,omitempty"`
	CAFile             string   `yaml:"ca_file" json:"ca_file,omitempty"`
}

// Variants of a jira desk.
const (
	JiraCloud             = "cloud"             // Jira Cloud: REST v3, ADF, email + API token
	JiraDataCenter        = "datacenter"        // Jira Data Center: REST v2, personal access token
	JiraServiceManagement = "servicemanagement" // Jira Service Management: servicedeskapi requests
)

// DefaultPagerDutyURL is the public PagerDuty Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// TLS modes of an email desk.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
	TLSNone     = "none"
)

// DefaultMaxAttachmentBytes is the largest bundle an email desk attaches
// when max_attachment_bytes is not set (10 MiB).
const DefaultMaxAttachmentBytes = 10 << 20

// Diagnostics configures what a diagnostics bundle holds.
type Diagnostics struct {
	// Commands are run for every bundle (e.g. the vendor's enquiry tool);
	// their output goes into the bundle.
	Commands []DiagnosticCommand `yaml:"commands" json:"commands,omitempty"`
	// Redact lists extra regular expressions whose matches are replaced by
	// <redacted> in every bundle file (PINs, tokens and passwords always are).
	Redact []string `yaml:"redact" json:"redact,omitempty"`
	// MaxBundleBytes caps a bundle's size (default 20 MiB); files past the cap
	// are truncated and the manifest says so.
	MaxBundleBytes int64 `yaml:"max_bundle_bytes" json:"max_bundle_bytes,omitempty"`
	// Retention is how many bundles are kept per device (default 10).
	Retention int `yaml:"retention" json:"retention,omitempty"`
}

// DiagnosticCommand is one command whose output goes into every bundle.
type DiagnosticCommand struct {
	Name    string   `yaml:"name" json:"name"`
	Command []string `yaml:"command" json:"command"`
	// Timeout bounds one run; Parse sets DefaultCommandTimeout where the
	// file leaves it out.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// Calendar is one region's business calendar (calendars.<region>); empty
// fields take the region's defaults of support-model.md section 1 (see
// package rma/calendar).
type Calendar struct {
	// Timezone is an IANA zone name, e.g. "Europe/London".
	Timezone string `yaml:"timezone" json:"timezone,omitempty"`
	// Hours are the vendor office's hours, "HH:MM-HH:MM", e.g. "08:30-17:00".
	Hours    string `yaml:"hours" json:"hours,omitempty"`
	Holidays []Date `yaml:"holidays" json:"holidays"`
	// RMACutoff "HH:MM" (optional): a fault confirmed after it counts from
	// the next business day.
	RMACutoff string `yaml:"rma_cutoff" json:"rma_cutoff,omitempty"`
}

// Spec returns the calendar in the form calendar.New takes.
func (c Calendar) Spec() calendar.Spec {
	s := calendar.Spec{Timezone: c.Timezone, Hours: c.Hours, Cutoff: c.RMACutoff}
	for _, d := range c.Holidays {
		s.Holidays = append(s.Holidays, d.Time)
	}
	return s
}

// RMA holds the hardware-return settings (support-model.md sections 1, 7).
type RMA struct {
	// ReturnDays is how many calendar days an advance replacement leaves
	// to return the faulty unit (default 30).
	ReturnDays int `yaml:"return_days" json:"return_days"`
	// RequireZeroizeAttestation refuses the event that ships a faulty unit
	// without --attest zeroized (default true).
	RequireZeroizeAttestation bool `yaml:"require_zeroize_attestation" json:"require_zeroize_attestation"`
}

// API configures the agent's case API.
type API struct {
	// TokenFile holds the bearer token of /api/v1/cases/{id}/events (or the
	// systemd credential api.token); no token means the API is off.
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
}
