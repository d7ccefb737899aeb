package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

func TestLoadExample(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/example.yml")
	if err != nil {
		t.Fatalf("the issue's example must load: %v", err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("File", c.File, "testdata/example.yml")
	check("StateDir", c.StateDir, "/var/lib/hsm-agent")
	check("Listen", c.Listen, "127.0.0.1:9842")
	check("PollInterval", c.PollInterval, 15*time.Second)
	check("RecheckInterval", c.RecheckInterval, 2*time.Second)
	check("ProbeTimeout", c.ProbeTimeout, 10*time.Second)
	check("ReinitInterval", c.ReinitInterval, 5*time.Minute)
	// Not in the example: defaults.
	check("SelftestInterval", c.SelftestInterval, 10*time.Minute)
	check("SlowThreshold", c.SlowThreshold, 2*time.Second)
	check("ConfirmPolls", c.ConfirmPolls, 3)
	check("FlapLimit", c.FlapLimit, 3)
	check("FlapWindow", c.FlapWindow, time.Hour)
	check("ReopenWindow", c.ReopenWindow, 7*24*time.Hour)
	check("Diagnostics", c.Diagnostics, Diagnostics{MaxBundleBytes: 20 << 20, Retention: 10})
	check("Modules", c.Modules, []Module{{Name: "nshield", Library: "/opt/nfast/toolkits/pkcs11/libcknfast.so",
		Env: map[string]string{"CKNFAST_LOADSHARING": "1"}}})
	check("Pools", c.Pools, []Pool{{Name: "payments", MinHealthy: 1}})
	if len(c.Devices) != 1 {
		t.Fatalf("devices: got %d, want 1", len(c.Devices))
	}
	d := c.Devices[0]
	check("device name", d.Name, "hsm-a")
	check("device serial", d.Serial, "1ffd0f9d8d8564b7")
	check("device module", d.Module, "nshield")
	check("device environment", d.Environment, EnvProduction)
	check("device pool", d.Pool, "payments")
	check("device commissioned", d.IsCommissioned(), true)
	check("device contract id", d.Contract.ID, "C-1001")
	check("device contract tier", d.Contract.Tier, TierPremiumPlus)
	check("device contract region", d.Contract.Region, RegionEMEA)
	check("device contract expires", d.Contract.Expires.String(), "2027-06-30")
	check("device contract expires time", d.Contract.Expires.Time, time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC))
	check("device site", d.Site, Site{Address: "1 Quay St, Leeds", Contact: "Ops desk", Phone: "+44 113 000 0000", Country: "GB"})
	check("device pin_file", d.PINFile, "/etc/hsm-agent/pins/hsm-a")
	check("Firmware", c.Firmware, Firmware{Minimum: "12.60", Approved: []string{"12.60", "12.80"}, EndOfLife: []string{"12.40"}})
	check("Calendars", c.Calendars, map[string]Calendar{RegionEMEA: {Timezone: "Europe/London", Hours: "08:30-17:00",
		Holidays: []Date{{time.Date(2026, 12, 25, 0, 0, 0, 0, time.UTC)}, {time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC)}}, RMACutoff: "15:00"}})
	check("RMA", c.RMA, RMA{ReturnDays: 30, RequireZeroizeAttestation: true})
	check("AutoCloseAfter", c.AutoCloseAfter, time.Hour)
	check("API", c.API, API{TokenFile: "/etc/hsm-agent/credentials/api.token"})
	// The calendar builds: Christmas is no business day, the cut-off is set.
	cal, err := calendar.New(RegionEMEA, c.Calendars[RegionEMEA].Spec())
	if err != nil {
		t.Fatal(err)
	}
	if cut, ok := cal.Cutoff(); !ok || cut != 15*time.Hour || cal.IsBusinessDay(time.Date(2026, 12, 28, 12, 0, 0, 0, time.UTC)) ||
		!cal.IsBusinessDay(time.Date(2026, 12, 29, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("calendar from the example: cut-off %v %v", cut, ok)
	}
	check("Desks", c.Desks, []Desk{
		{Name: "vendor", Type: DeskWebhook, Role: RoleVendor, Upload: UploadAuto,
			URL: "https://support.example/hooks/hsm", SecretFile: "/etc/hsm-agent/vendor.key", Timeout: 10 * time.Second},
		{Name: "ops", Type: DeskSpool, Role: RoleInternal, Upload: UploadAuto, Dir: "/var/spool/hsm-agent"},
	})
}

// TestLoadCaseSettings loads the settings issue 3 added (flapping, reopen
// window, diagnostics, desk phones, timeouts and rates) and their defaults.
func TestLoadCaseSettings(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/cases.yml")
	if err != nil {
		t.Fatalf("cases.yml must load: %v", err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("FlapLimit", c.FlapLimit, 5)
	check("FlapWindow", c.FlapWindow, 30*time.Minute)
	check("ReopenWindow", c.ReopenWindow, 72*time.Hour)
	check("Diagnostics", c.Diagnostics, Diagnostics{
		Commands: []DiagnosticCommand{
			{Name: "enquiry", Command: []string{"/opt/nfast/bin/enquiry"}, Timeout: 30 * time.Second}, // default
			{Name: "nfkminfo", Command: []string{"/opt/nfast/bin/nfkminfo", "-v"}, Timeout: 5 * time.Second},
		},
		Redact:         []string{`password=\S+`, `(?i)api[_-]?key:\s*\S+`},
		MaxBundleBytes: 5 << 20,
		Retention:      10, // default
	})
	check("Desks", c.Desks, []Desk{
		{Name: "vendor", Type: DeskWebhook, Role: RoleVendor, Upload: UploadApprove, URL: "https://support.example/hooks/hsm",
			Phones:  map[string]string{RegionEMEA: "+44 20 7946 0000", RegionAmericas: "+1 212 555 0100"},
			Timeout: 10 * time.Second, RatePerMinute: 30},
		{Name: "itsm", Type: DeskWebhook, Role: RoleInternal, Upload: UploadAuto, URL: "https://itsm.example/hooks/hsm",
			Timeout: 3 * time.Second},
		{Name: "pager", Type: DeskSpool, Role: RolePager, Upload: UploadAuto, Dir: "/var/spool/hsm-agent/pager", RatePerMinute: 10},
	})
	// A Config built in code may leave list-item timeouts at zero (meaning
	// the default); negative ones are still errors.
	c.lines, c.File = nil, ""
	c.Desks[1].Timeout, c.Diagnostics.Commands[1].Timeout = 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("zero timeouts in a Config built in code: %v", err)
	}
	c.Desks[1].Timeout = -time.Second
	if err := c.Validate(); err == nil || err.Error() != `desks[1].timeout: must be greater than zero, got "-1s"; the default is "10s"` {
		t.Errorf("negative desk timeout: got %v", err)
	}
}

// invalid lists every testdata/invalid-*.yml with the exact error it must give.
var invalid = map[string]string{
	"invalid-empty.yml":              `testdata/invalid-empty.yml:1: ` + errEmptyFile,
	"invalid-comments-only.yml":      `testdata/invalid-comments-only.yml:1: ` + errEmptyFile,
	"invalid-unknown-field.yml":      `testdata/invalid-unknown-field.yml:3: colour: unknown field "colour"; allowed here: state_dir, listen, poll_interval, recheck_interval, probe_timeout, reinit_interval, selftest_interval, slow_threshold, confirm_polls, modules, pools, devices, firmware, desks, calendars, flap_limit, flap_window, reopen_window, diagnostics, rma, auto_close_after, api`,
	"invalid-unknown-field-typo.yml": `testdata/invalid-unknown-field-typo.yml:6: devices[0].serail: unknown field "serail"; did you mean "serial"?`,
	"invalid-duration.yml":           `testdata/invalid-duration.yml:1: poll_interval: "15x" is not a valid duration; use a number and a unit (ms, s, m, h), e.g. "15s"`,
	"invalid-duration-no-unit.yml":   `testdata/invalid-duration-no-unit.yml:1: probe_timeout: "10" is not a valid duration; use a number and a unit (ms, s, m, h), e.g. "10s"`,
	"invalid-duration-not-positive.yml": `testdata/invalid-duration-not-positive.yml:1: recheck_interval: must be greater than zero, got "0s"; the default is "2s"` + "\n" +
		`testdata/invalid-duration-not-positive.yml:2: slow_threshold: must be greater than zero, got "-1s"; the default is "2s"`,
	"invalid-confirm-polls.yml":           `testdata/invalid-confirm-polls.yml:1: confirm_polls: must be at least 1, got 0; the default is 3`,
	"invalid-confirm-polls-type.yml":      `testdata/invalid-confirm-polls-type.yml:1: confirm_polls: "three" is not a whole number`,
	"invalid-listen.yml":                  `testdata/invalid-listen.yml:1: listen: "9842" is not a host:port address; e.g. "127.0.0.1:9842" or ":9842"`,
	"invalid-state-dir.yml":               `testdata/invalid-state-dir.yml:1: state_dir: required; the default is "/var/lib/hsm-agent"`,
	"invalid-environment.yml":             `testdata/invalid-environment.yml:8: devices[0].environment: "prod" is not a valid environment; use one of production, non-production, development`,
	"invalid-environment-missing.yml":     `testdata/invalid-environment-missing.yml:5: devices[0].environment: required; use one of production, non-production, development`,
	"invalid-tier.yml":                    `testdata/invalid-tier.yml:9: devices[0].contract.tier: "gold" is not a valid tier; use one of premium-plus, premium, standard`,
	"invalid-tier-missing.yml":            `testdata/invalid-tier-missing.yml:9: devices[0].contract.tier: required; use one of premium-plus, premium, standard`,
	"invalid-region.yml":                  `testdata/invalid-region.yml:9: devices[0].contract.region: "europe" is not a valid region; use one of emea, apac, americas`,
	"invalid-region-missing.yml":          `testdata/invalid-region-missing.yml:9: devices[0].contract.region: required; use one of emea, apac, americas`,
	"invalid-contract-expires.yml":        `testdata/invalid-contract-expires.yml:12: devices[0].contract.expires: "30/06/2027" is not a date; use YYYY-MM-DD, e.g. 2027-06-30`,
	"invalid-bool.yml":                    `testdata/invalid-bool.yml:9: devices[0].commissioned: "maybe" is not a boolean; use true or false`,
	"invalid-device-module-unknown.yml":   `testdata/invalid-device-module-unknown.yml:7: devices[0].module: no module named "nshield"; defined modules: softhsm`,
	"invalid-device-pool-unknown.yml":     `testdata/invalid-device-pool-unknown.yml:12: devices[0].pool: no pool named "payment"; defined pools: payments`,
	"invalid-device-duplicate-name.yml":   `testdata/invalid-device-duplicate-name.yml:9: devices[1].name: duplicate device name "hsm-a", already used by devices[0]; each must be unique`,
	"invalid-device-duplicate-serial.yml": `testdata/invalid-device-duplicate-serial.yml:10: devices[1].serial: duplicate serial "1ffd0f9d8d8564b7", already used by devices[0]; each must be unique`,
	"invalid-device-missing-name.yml":     `testdata/invalid-device-missing-name.yml:5: devices[0].name: required; every device needs a unique name (it is the metric label "device")`,
	"invalid-device-missing-serial.yml":   `testdata/invalid-device-missing-serial.yml:5: devices[0].serial: required; set the token serial number the HSM reports (pkcs11-tool -L shows it)`,
	"invalid-device-missing-module.yml":   `testdata/invalid-device-missing-module.yml:5: devices[0].module: required; defined modules: softhsm`,
	"invalid-module-missing-name.yml":     `testdata/invalid-module-missing-name.yml:2: modules[0].name: required; every module needs a unique name`,
	"invalid-module-missing-library.yml":  `testdata/invalid-module-missing-library.yml:2: modules[0].library: required; set the path of the module's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so`,
	"invalid-module-duplicate-name.yml":   `testdata/invalid-module-duplicate-name.yml:4: modules[1].name: duplicate module name "softhsm", already used by modules[0]; each must be unique`,
	"invalid-pool-missing-name.yml":       `testdata/invalid-pool-missing-name.yml:2: pools[0].name: required; every pool needs a unique name`,
	"invalid-pool-duplicate-name.yml":     `testdata/invalid-pool-duplicate-name.yml:4: pools[1].name: duplicate pool name "payments", already used by pools[0]; each must be unique`,
	"invalid-pool-min-healthy.yml":        `testdata/invalid-pool-min-healthy.yml:3: pools[0].min_healthy: must be 0 or more, got -1`,
	"invalid-firmware-minimum.yml":        `testdata/invalid-firmware-minimum.yml:1: firmware.minimum: "12.6a" is not a version; use dotted numbers, e.g. "12.60"`,
	"invalid-firmware-approved.yml":       `testdata/invalid-firmware-approved.yml:3: firmware.approved[1]: "v12.80" is not a version; use dotted numbers, e.g. "12.60"`,
	"invalid-desk-missing-name.yml":       `testdata/invalid-desk-missing-name.yml:2: desks[0].name: required; every desk needs a unique name`,
	"invalid-desk-duplicate-name.yml":     `testdata/invalid-desk-duplicate-name.yml:3: desks[1].name: duplicate desk name "ops", already used by desks[0]; each must be unique`,
	"invalid-desk-type.yml":               `testdata/invalid-desk-type.yml:2: desks[0].type: "fax" is not a known desk type; use one of webhook, spool, rt, jira, pagerduty, zendesk, servicenow, email, alertmanager`,
	"invalid-desk-type-missing.yml":       `testdata/invalid-desk-type-missing.yml:2: desks[0].type: required; use one of webhook, spool, rt, jira, pagerduty, zendesk, servicenow, email, alertmanager`,
	"invalid-desk-role.yml":               `testdata/invalid-desk-role.yml:2: desks[0].role: "boss" is not a valid role; use one of vendor, internal, pager`,
	"invalid-desk-role-missing.yml":       `testdata/invalid-desk-role-missing.yml:2: desks[0].role: required; use one of vendor, internal, pager`,
	"invalid-desk-upload.yml":             `testdata/invalid-desk-upload.yml:2: desks[0].upload: "manual" is not a valid upload policy; use one of auto, approve`,
	"invalid-desk-webhook-url.yml":        `testdata/invalid-desk-webhook-url.yml:2: desks[0].url: required for a webhook desk; set the URL that receives case events, e.g. https://support.example/hooks/hsm`,
	"invalid-desk-webhook-url-scheme.yml": `testdata/invalid-desk-webhook-url-scheme.yml:5: desks[0].url: "ftp://support.example/hooks/hsm" is not an http or https URL; e.g. https://support.example/hooks/hsm`,
	"invalid-desk-spool-dir.yml":          `testdata/invalid-desk-spool-dir.yml:2: desks[0].dir: required for a spool desk; set the directory to write case events to, e.g. /var/spool/hsm-agent`,
	"invalid-desk-unused-setting.yml":     `testdata/invalid-desk-unused-setting.yml:2: desks[0].url: not used by a spool desk; remove it`,
	"invalid-desk-rt-queue.yml":           `testdata/invalid-desk-rt-queue.yml:2: desks[0].queue: required for a rt desk; set the RT queue tickets go to, e.g. General`,
	"invalid-desk-rt-auth.yml":            `testdata/invalid-desk-rt-auth.yml:2: desks[0].token_file: required for an rt desk; set token_file to a file holding an RT auth token, or username and password_file`,
	"invalid-desk-rt-both.yml":            `testdata/invalid-desk-rt-both.yml:7: desks[0].token_file: set either token_file or username and password_file, not both`,
	"invalid-desk-rt-password.yml":        `testdata/invalid-desk-rt-password.yml:2: desks[0].password_file: required with username; set a file holding the RT user's password`,
	"invalid-desk-rt-url.yml":             `testdata/invalid-desk-rt-url.yml:5: desks[0].url: "rt.example.com" is not an http or https URL; e.g. https://rt.example.com`,
	"invalid-desk-rt-queue-unused.yml":    `testdata/invalid-desk-rt-queue-unused.yml:6: desks[0].queue: not used by a webhook desk; remove it`,
	"invalid-desk-jira-dc-email.yml":      `testdata/invalid-desk-jira-dc-email.yml:10: desks[0].email: not used by a jira datacenter desk (token_file holds a personal access token); remove it`,
	"invalid-desk-jira-email.yml":         `testdata/invalid-desk-jira-email.yml:2: desks[0].email: required for a jira cloud desk; set the Atlassian account e-mail the API token belongs to`,
	"invalid-desk-jira-jsm.yml":           `testdata/invalid-desk-jira-jsm.yml:2: desks[0].service_desk_id: required for a jira servicemanagement desk; set the service desk's ID, e.g. "4"`,
	"invalid-desk-jira-priority.yml":      `testdata/invalid-desk-jira-priority.yml:12: desks[0].priorities.5: not a severity; use 1, 2, 3 or 4`,
	"invalid-desk-jira-project.yml":       `testdata/invalid-desk-jira-project.yml:2: desks[0].project: required for a jira datacenter desk; set the project key issues go to, e.g. OPS`,
	"invalid-desk-jira-token.yml":         `testdata/invalid-desk-jira-token.yml:2: desks[0].token_file: required for a jira desk; set a file holding the Jira API token (cloud, with email) or personal access token (datacenter)`,
	"invalid-desk-jira-variant.yml":       `testdata/invalid-desk-jira-variant.yml:5: desks[0].variant: "server" is not a jira variant; use one of cloud, datacenter, servicemanagement`,
	"invalid-desk-pagerduty-key.yml":      `testdata/invalid-desk-pagerduty-key.yml:2: desks[0].routing_key_file: required for a pagerduty desk; set a file holding the Events API v2 routing key of the PagerDuty service`,
	"invalid-desk-pagerduty-role.yml":     `testdata/invalid-desk-pagerduty-role.yml:4: desks[0].role: a pagerduty desk pages people: it takes role pager, not "vendor"`,
	"invalid-calendar-region.yml":         `testdata/invalid-calendar-region.yml:2: calendars.europe: "europe" is not a region; use one of emea, apac, americas`,
	"invalid-calendar-holiday.yml":        `testdata/invalid-calendar-holiday.yml:3: calendars.emea.holidays[1]: "2026-12-32" is not a date; use YYYY-MM-DD, e.g. 2027-06-30`,
	"invalid-type-list.yml":               `testdata/invalid-type-list.yml:5: devices[0].name: expected a single value, got a list`,
	"invalid-type-mapping.yml":            `testdata/invalid-type-mapping.yml:2: devices: expected a list, got a mapping`,
	"invalid-top-level.yml":               `testdata/invalid-top-level.yml:1: expected a mapping of settings at the top level, got a list`,
	"invalid-duplicate-key.yml":           `testdata/invalid-duplicate-key.yml:3: listen: set twice (first at line 1); keep one`,
	"invalid-null-key.yml":                `testdata/invalid-null-key.yml:2: a key here is empty or null (~, null); write the setting's name before the colon`,
	"invalid-duplicate-key-nested.yml":    `testdata/invalid-duplicate-key-nested.yml:8: devices[0].name: set twice (first at line 7); keep one`,
	"invalid-syntax.yml":                  `testdata/invalid-syntax.yml:2: invalid YAML at or below this line: did not find expected '-' indicator`,
	"invalid-multiple-documents.yml":      `testdata/invalid-multiple-documents.yml:2: a second YAML document starts here; put the whole configuration in one document`,
	"invalid-flap-limit.yml":              `testdata/invalid-flap-limit.yml:1: flap_limit: must be at least 1, got 0; the default is 3`,
	"invalid-window-not-positive.yml": `testdata/invalid-window-not-positive.yml:1: flap_window: must be greater than zero, got "0s"; the default is "1h"` + "\n" +
		`testdata/invalid-window-not-positive.yml:2: reopen_window: must be greater than zero, got "-1h0m0s"; the default is "168h"`,
	"invalid-desk-timeout.yml": `testdata/invalid-desk-timeout.yml:6: desks[0].timeout: must be greater than zero, got "0s"; the default is "10s"`,
	"invalid-timeout-type.yml": `testdata/invalid-timeout-type.yml:6: desks[0].timeout: "10" is not a valid duration; use a number and a unit (ms, s, m, h), e.g. "10s"` + "\n" +
		`testdata/invalid-timeout-type.yml:9: diagnostics.commands[0].timeout: "1 minute" is not a valid duration; use a number and a unit (ms, s, m, h), e.g. "30s"`,
	"invalid-desk-timeout-unused.yml": `testdata/invalid-desk-timeout-unused.yml:2: desks[0].timeout: not used by a spool desk; remove it`,
	"invalid-desk-phones-role.yml":    `testdata/invalid-desk-phones-role.yml:6: desks[0].phones: only a desk with role vendor has phones (this one has role "internal"); remove phones or set role: vendor`,
	"invalid-desk-phones-region.yml": `testdata/invalid-desk-phones-region.yml:8: desks[0].phones.europe: "europe" is neither a region nor a country; use one of emea, apac, americas, or an ISO 3166 country code such as "AU"` + "\n" +
		`testdata/invalid-desk-phones-region.yml:9: desks[0].phones.apac: required; set the vendor's support phone number for this region or country, e.g. "+44 20 7946 0000"` + "\n" +
		`testdata/invalid-desk-phones-region.yml:11: desks[0].phones.gb: "gb" is neither a region nor a country; use one of emea, apac, americas, or an ISO 3166 country code such as "AU"`,
	"invalid-calendar-timezone.yml": `testdata/invalid-calendar-timezone.yml:3: calendars.emea.timezone: "Europe/Londn" is not a time zone; use an IANA name such as "Europe/London"` + "\n" +
		`testdata/invalid-calendar-timezone.yml:5: calendars.apac.timezone: "Local" is not a time zone; use an IANA name such as "Europe/London"`,
	"invalid-calendar-hours.yml": `testdata/invalid-calendar-hours.yml:3: calendars.emea.hours: "8:30-17:00" is not office hours; use HH:MM-HH:MM in 24-hour time, e.g. "08:30-17:00"` + "\n" +
		`testdata/invalid-calendar-hours.yml:5: calendars.americas.hours: "21:00-09:00" closes before it opens; use HH:MM-HH:MM with the opening first, e.g. "08:30-17:00"`,
	"invalid-calendar-cutoff.yml": `testdata/invalid-calendar-cutoff.yml:3: calendars.emea.rma_cutoff: "3pm" is not a time of day; use HH:MM in 24-hour time, e.g. "15:00"` + "\n" +
		`testdata/invalid-calendar-cutoff.yml:6: calendars.apac.rma_cutoff: "18:00" is outside the office hours 09:00-17:00; set a time after the opening and at or before the closing` + "\n" +
		`testdata/invalid-calendar-cutoff.yml:8: calendars.americas.rma_cutoff: "08:00" is outside the office hours 09:00-21:00; set a time after the opening and at or before the closing`,
	"invalid-site-country.yml":                  `testdata/invalid-site-country.yml:9: devices[0].site.country: "uk" is not an ISO 3166 country code; use its two capital letters, e.g. "GB" or "AU"`,
	"invalid-firmware-end-of-life.yml":          `testdata/invalid-firmware-end-of-life.yml:4: firmware.end_of_life[1]: "12.x" is not a version; use dotted numbers, e.g. "12.60"`,
	"invalid-rma-return-days.yml":               `testdata/invalid-rma-return-days.yml:2: rma.return_days: must be at least 1 (calendar days to return the faulty unit of an advance replacement), got 0; the default is 30`,
	"invalid-rma-attestation-type.yml":          `testdata/invalid-rma-attestation-type.yml:2: rma.require_zeroize_attestation: "yes please" is not a boolean; use true or false`,
	"invalid-auto-close-after.yml":              `testdata/invalid-auto-close-after.yml:1: auto_close_after: must be greater than zero, got "0s"; the default is "1h"`,
	"invalid-api-unknown-field.yml":             `testdata/invalid-api-unknown-field.yml:2: api.token: unknown field "token"; allowed here: token_file`,
	"invalid-desk-rate.yml":                     `testdata/invalid-desk-rate.yml:2: desks[0].rate_per_minute: must be 0 or more (0 means no limit), got -1`,
	"invalid-diagnostics-command-name.yml":      `testdata/invalid-diagnostics-command-name.yml:3: diagnostics.commands[0].name: required; every diagnostics command needs a unique name (it names the command's output in the bundle)`,
	"invalid-diagnostics-command-duplicate.yml": `testdata/invalid-diagnostics-command-duplicate.yml:4: diagnostics.commands[1].name: duplicate command name "enquiry", already used by diagnostics.commands[0]; each must be unique`,
	"invalid-diagnostics-command-empty.yml": `testdata/invalid-diagnostics-command-empty.yml:3: diagnostics.commands[0].command: required; set the program and its arguments as a list, e.g. ["/opt/nfast/bin/enquiry"]` + "\n" +
		`testdata/invalid-diagnostics-command-empty.yml:5: diagnostics.commands[1].command[0]: the program is empty; set its path, e.g. "/opt/nfast/bin/enquiry"`,
	"invalid-diagnostics-command-timeout.yml": `testdata/invalid-diagnostics-command-timeout.yml:5: diagnostics.commands[0].timeout: must be greater than zero, got "-5s"; the default is "30s"`,
	"invalid-diagnostics-redact.yml": `testdata/invalid-diagnostics-redact.yml:4: diagnostics.redact[1]: "api_key=(\\w+" is not a valid regular expression: error parsing regexp: missing closing ): ` + "`api_key=(\\w+`" + `` + "\n" +
		`testdata/invalid-diagnostics-redact.yml:5: diagnostics.redact[2]: empty pattern (it would match everywhere); remove it`,
	"invalid-diagnostics-max-bundle.yml": `testdata/invalid-diagnostics-max-bundle.yml:2: diagnostics.max_bundle_bytes: must be greater than zero, got 0; the default is 20971520 (20 MiB)`,
	"invalid-diagnostics-retention.yml":  `testdata/invalid-diagnostics-retention.yml:2: diagnostics.retention: must be at least 1 (bundles kept per device), got 0; the default is 10`,
	"invalid-many.yml": strings.Join([]string{
		`testdata/invalid-many.yml:2: poll_interval: "15x" is not a valid duration; use a number and a unit (ms, s, m, h), e.g. "15s"`,
		`testdata/invalid-many.yml:3: confirm_polls: must be at least 1, got 0; the default is 3`,
		`testdata/invalid-many.yml:10: devices[0].module: no module named "nshield"; defined modules: softhsm`,
		`testdata/invalid-many.yml:11: devices[0].environment: "prod" is not a valid environment; use one of production, non-production, development`,
		`testdata/invalid-many.yml:12: devices[0].contract.tier: "gold" is not a valid tier; use one of premium-plus, premium, standard`,
		`testdata/invalid-many.yml:14: devices[1].serial: duplicate serial "1ffd0f9d8d8564b7", already used by devices[0]; each must be unique`,
		`testdata/invalid-many.yml:17: devices[1].colour: unknown field "colour"; allowed here: name, serial, module, environment, pool, commissioned, contract, site, pin_file`,
		`testdata/invalid-many.yml:19: desks[0].dir: required for a spool desk; set the directory to write case events to, e.g. /var/spool/hsm-agent`,
	}, "\n"),
	"invalid-desk-email-only-vendor.yml": `testdata/invalid-desk-email-only-vendor.yml:4: desks[1].type: an email desk is the only vendor channel and there is no pager desk: ` +
		`vendor desks log e-mail as severity 3, so a severity-1 case would wait; add a desk with role pager (e.g. a webhook to the on-call tool) or a vendor desk that is not e-mail`,
	"invalid-desk-email-settings.yml": `testdata/invalid-desk-email-settings.yml:5: desks[0].smtp: "smtp.example.com" is not host:port; e.g. smtp.example.com:587` + "\n" +
		`testdata/invalid-desk-email-settings.yml:6: desks[0].tls: "ssl" is not a TLS mode; use one of starttls, implicit, none (default starttls)` + "\n" +
		`testdata/invalid-desk-email-settings.yml:7: desks[0].username: username and password_file go together: set password_file for SMTP AUTH, or remove username` + "\n" +
		`testdata/invalid-desk-email-settings.yml:8: desks[0].from: "not an address" is not an e-mail address; e.g. hsm-agent@example.com`,
	"invalid-desk-alertmanager-url.yml": `testdata/invalid-desk-alertmanager-url.yml:2: desks[0].url: "alertmanager:9093" is not an http or https URL; e.g. http://alertmanager.example:9093`,
}

func TestInvalidConfigs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]bool{}
	for _, f := range files {
		onDisk[filepath.Base(f)] = true
		if _, ok := invalid[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expected message in the table", f)
		}
	}
	for name, want := range invalid {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !onDisk[name] {
				t.Fatalf("testdata/%s is missing", name)
			}
			c, err := Load(filepath.Join("testdata", name))
			if err == nil {
				t.Fatalf("loaded without error: %+v", c)
			}
			if c != nil {
				t.Errorf("Load returned a config along with the error")
			}
			if got := err.Error(); got != want {
				t.Errorf("wrong message\ngot:\n%s\nwant:\n%s", got, want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File == "" || fe.Line == 0 {
				t.Errorf("error is not a *FieldError with file and line: %#v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	// A file without settings is an error, not the defaults: an agent
	// started or reloaded on it would watch nothing.
	for _, data := range []string{"", "# nothing set\n", "---\n", "---\n# nothing\n---\n", "~\n"} {
		if c, err := Parse([]byte(data), "mem.yml"); err == nil || err.Error() != "mem.yml:1: "+errEmptyFile {
			t.Errorf("Parse(%q) = %v, %v; want the empty-file error", data, c, err)
		}
	}
	for _, data := range []string{"listen: 127.0.0.1:9842\n", "{}\n"} {
		c, err := Parse([]byte(data), "mem.yml")
		if err != nil {
			t.Fatalf("Parse(%q): %v", data, err)
		}
		want := Default()
		want.File, want.lines = c.File, c.lines
		if !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) = %+v, want the defaults %+v", data, c, want)
		}
	}
	d := Default()
	if d.RMA != (RMA{ReturnDays: 30, RequireZeroizeAttestation: true}) || d.AutoCloseAfter != time.Hour || d.Calendars != nil {
		t.Errorf("Default() RMA %+v, auto_close_after %v, calendars %v", d.RMA, d.AutoCloseAfter, d.Calendars)
	}
	// A file may turn the attestation off and keep the other defaults.
	if c, err := Parse([]byte("rma: {require_zeroize_attestation: false}\n"), "mem.yml"); err != nil ||
		c.RMA != (RMA{ReturnDays: 30}) {
		t.Errorf("rma without return_days: %+v, %v", c, err)
	}
	// Desk phones take regions and ISO country codes.
	if _, err := Parse([]byte("desks:\n  - {name: v, type: spool, role: vendor, dir: /d, phones: {emea: '+44 1', AU: '+61 8', JP: '+81 50'}}\n"), "mem.yml"); err != nil {
		t.Errorf("phones by country: %v", err)
	}
	if d.Listen != "127.0.0.1:9842" || d.PollInterval != 15*time.Second || d.RecheckInterval != 2*time.Second ||
		d.ProbeTimeout != 10*time.Second || d.ReinitInterval != 5*time.Minute || d.SelftestInterval != 10*time.Minute ||
		d.SlowThreshold != 2*time.Second || d.ConfirmPolls != 3 || d.StateDir != "/var/lib/hsm-agent" {
		t.Errorf("Default() = %+v, not the documented defaults", d)
	}
	// Explicit values win over defaults; upload defaults to auto per desk.
	c, err := Parse([]byte("poll_interval: 1m\ndesks:\n  - {name: a, type: spool, role: internal, dir: /d}\n"+
		"  - {name: b, type: spool, role: internal, dir: /d, upload: approve}\n"), "mem.yml")
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval != time.Minute || c.Desks[0].Upload != UploadAuto || c.Desks[1].Upload != UploadApprove {
		t.Errorf("got poll_interval %v, uploads %q %q", c.PollInterval, c.Desks[0].Upload, c.Desks[1].Upload)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Modules = []Module{{Name: "soft", Library: "/lib.so"}}
	c.Devices = []Device{{Name: "a", Serial: "1", Module: "soft", Environment: EnvDevelopment}}
	c.Desks = []Desk{{Name: "d", Type: DeskSpool, Role: RolePager, Dir: "/d"}} // Upload "" means auto
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Devices = append(c.Devices, Device{Name: "a", Serial: "2", Module: "hard", Environment: EnvDevelopment})
	c.ProbeTimeout = 0
	want := "probe_timeout: must be greater than zero, got \"0s\"; the default is \"10s\"\n" +
		"devices[1].name: duplicate device name \"a\", already used by devices[0]; each must be unique\n" +
		"devices[1].module: no module named \"hard\"; defined modules: soft"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestLookups(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.Device("hsm-a"); !ok || d.Serial != "1ffd0f9d8d8564b7" {
		t.Errorf("Device(hsm-a) = %+v, %v", d, ok)
	}
	if d, ok := c.DeviceBySerial("1ffd0f9d8d8564b7  "); !ok || d.Name != "hsm-a" {
		t.Errorf("DeviceBySerial = %+v, %v", d, ok)
	}
	if m, ok := c.Module("nshield"); !ok || m.Library != "/opt/nfast/toolkits/pkcs11/libcknfast.so" {
		t.Errorf("Module(nshield) = %+v, %v", m, ok)
	}
	if p, ok := c.Pool("payments"); !ok || p.MinHealthy != 1 {
		t.Errorf("Pool(payments) = %+v, %v", p, ok)
	}
	_, ok1 := c.Device("nope")
	_, ok2 := c.DeviceBySerial("nope")
	_, ok3 := c.Module("nope")
	_, ok4 := c.Pool("nope")
	if ok1 || ok2 || ok3 || ok4 {
		t.Error("lookups of unknown names must report false")
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/example.yml")
	if err != nil {
		t.Fatal(err)
	}
	c.Modules[0].Env["HSM_PIN"] = "planted-env-pin"
	c.Desks[0].URL = "https://user:planted-url-pass@support.example/hooks/planted-path?sig=planted-sig&code=planted-code"
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, leak := range []string{"planted-env-pin", "planted-url-pass", "planted-path", "planted-sig", "planted-code"} {
		if strings.Contains(s, leak) {
			t.Errorf("Redacted output contains %q:\n%s", leak, s)
		}
	}
	for _, want := range []string{"HSM_PIN: <secret>", "CKNFAST_LOADSHARING: \"1\"", "expires: 2027-06-30",
		"selftest_interval: 10m0s", "upload: auto", "url: https://support.example\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("Redacted output lacks %q:\n%s", want, s)
		}
	}
	if c.Modules[0].Env["HSM_PIN"] != "planted-env-pin" {
		t.Error("Redacted modified the config it renders")
	}
	// The rendering is itself a valid configuration with the same content.
	back, err := Parse(out, "redacted.yml")
	if err != nil {
		t.Fatalf("Redacted output does not load: %v\n%s", err, s)
	}
	c.Modules[0].Env["HSM_PIN"] = "<secret>"
	c.Desks[0].URL = "https://support.example"
	back.File, back.lines = c.File, c.lines
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, c)
	}
}

func TestCheckFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib.so")
	pin := filepath.Join(dir, "pin")
	open := filepath.Join(dir, "open.key")
	for path, mode := range map[string]os.FileMode{lib: 0o755, pin: 0o600, open: 0o644} {
		if err := os.WriteFile(path, []byte("x\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // umask may have cut bits
			t.Fatal(err)
		}
	}
	yml := "modules:\n  - {name: ok, library: " + lib + "}\n  - {name: gone, library: " + dir + "/missing.so}\n" +
		"devices:\n  - {name: a, serial: '1', module: ok, environment: production, pin_file: " + pin + "}\n" +
		"  - {name: b, serial: '2', module: ok, environment: production, pin_file: " + dir + "}\n" +
		"desks:\n  - {name: v, type: webhook, role: vendor, url: 'https://x.example/h', secret_file: " + open + "}\n" +
		"api: {token_file: " + open + "}\n"
	c, err := Parse([]byte(yml), "f.yml")
	if err != nil {
		t.Fatalf("missing files must not fail Load: %v", err)
	}
	var got []string
	errs := c.CheckFiles()
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"f.yml:3: modules[1].library: file " + dir + "/missing.so does not exist",
		"f.yml:6: devices[1].pin_file: " + dir + " is a directory; name a file",
		"f.yml:8: desks[0].secret_file: secret file " + open + " is readable by any user; run chmod o-rwx " + open,
		"f.yml:9: api.token_file: secret file " + open + " is readable by any user; run chmod o-rwx " + open,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CheckFiles:\n got %q\nwant %q", got, want)
	}
	if len(errs) > 0 && !errors.Is(errs[0], fs.ErrNotExist) {
		t.Errorf("missing file error does not wrap fs.ErrNotExist: %v", errs[0])
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yml")
	_, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(missing) = %v, want an error naming %s and wrapping fs.ErrNotExist", err, path)
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"12.60", "12.60", 0}, {"12.6", "12.60", -1}, {"12.80", "12.60", 1}, {"2.10", "2.9", 1},
		{"3", "3.0", 0}, {"12.60.1", "12.60", 1}, {"11.99", "12.0", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDeskTypes(t *testing.T) {
	t.Parallel()
	if got := DeskTypes(); !reflect.DeepEqual(got, []string{DeskWebhook, DeskSpool, DeskRT, DeskJira, DeskPagerDuty, DeskZendesk, DeskServiceNow, DeskEmail, DeskAlertmanager}) {
		t.Errorf("DeskTypes() = %q", got)
	}
}
