package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// FieldError is one problem of a configuration: where it is and what to do.
// Its Error() reads "FILE:LINE: PATH: MESSAGE", leaving out what is unknown.
type FieldError struct {
	File string // configuration file; empty for a Config built in code
	Line int    // 1-based line in File; 0 when unknown
	Path string // field path such as "devices[1].contract.tier"; empty for the whole file
	Msg  string // what is wrong and what is allowed
	Err  error  // underlying error, if any
}

// Error implements error.
func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Allowed values, in the order messages list them.
var (
	environments = []string{EnvProduction, EnvNonProduction, EnvDevelopment}
	tiers        = []string{TierPremiumPlus, TierPremium, TierStandard}
	regions      = []string{RegionEMEA, RegionAPAC, RegionAmericas}
	roles        = []string{RoleVendor, RoleInternal, RolePager}
	uploads      = []string{UploadAuto, UploadApprove}
)

// reVersion is a dotted numeric firmware version such as "12.60".
var reVersion = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)

// Validate checks the whole configuration and returns every problem found,
// joined (one per line), or nil. Errors are *FieldError.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return joinErrors(errs)
	}
	return nil
}

// problems collects FieldErrors for one Config.
type problems struct {
	c    *Config
	errs []*FieldError
}

func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.c.File, Line: p.c.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// oneOf reports value at path unless it is one of allowed; empty is "required".
func (p *problems) oneOf(path, what, value string, allowed []string) {
	switch {
	case value == "":
		p.add(path, "required; use one of %s", strings.Join(allowed, ", "))
	case !contains(allowed, value):
		p.add(path, "%q is not a valid %s; use one of %s", value, what, strings.Join(allowed, ", "))
	}
}

// unique reports a name already used at an earlier index of the same list.
func (p *problems) unique(seen map[string]string, path, list, what, value string) {
	if value == "" {
		return
	}
	if first, ok := seen[value]; ok {
		p.add(path, "duplicate %s %q, already used by %s; each must be unique", what, value, first)
		return
	}
	seen[value] = list
}

// lineOf returns the line of path, or of its closest ancestor in the file.
// ErrorAt returns a *FieldError for the field at path (e.g.
// "modules[0].library") with its file and line: for checks made outside
// this package, such as loading a module library.
func (c *Config) ErrorAt(path, msg string) *FieldError {
	return &FieldError{File: c.File, Line: c.lineOf(path), Path: path, Msg: msg}
}

func (c *Config) lineOf(path string) int {
	if c.lines == nil {
		return 0
	}
	for path != "" {
		if l, ok := c.lines.byPath[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func (c *Config) validate() []*FieldError {
	p := &problems{c: c}

	if c.StateDir == "" {
		p.add("state_dir", "required; the default is %q", DefaultStateDir)
	}
	if c.Listen == "" {
		p.add("listen", "required; e.g. %q", DefaultListen)
	} else if _, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) {
		p.add("listen", "%q is not a host:port address; e.g. %q or \":9842\"", c.Listen, DefaultListen)
	}
	for _, d := range c.durations() {
		if *d.value <= 0 {
			p.add(d.name, "must be greater than zero, got %q; the default is %q", d.value.String(), shortDuration(d.def))
		}
	}
	if c.ConfirmPolls < 1 {
		p.add("confirm_polls", "must be at least 1, got %d; the default is %d", c.ConfirmPolls, DefaultConfirmPolls)
	}
	if c.FlapLimit < 1 {
		p.add("flap_limit", "must be at least 1, got %d; the default is %d", c.FlapLimit, DefaultFlapLimit)
	}

	modules := map[string]string{}
	var moduleNames []string
	for i, m := range c.Modules {
		path := fmt.Sprintf("modules[%d]", i)
		if m.Name == "" {
			p.add(path+".name", "required; every module needs a unique name")
		}
		p.unique(modules, path+".name", path, "module name", m.Name)
		if m.Name != "" {
			moduleNames = append(moduleNames, m.Name)
		}
		if m.Library == "" {
			p.add(path+".library", "required; set the path of the module's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so")
		}
	}

	pools := map[string]string{}
	var poolNames []string
	for i, pl := range c.Pools {
		path := fmt.Sprintf("pools[%d]", i)
		if pl.Name == "" {
			p.add(path+".name", "required; every pool needs a unique name")
		}
		p.unique(pools, path+".name", path, "pool name", pl.Name)
		if pl.Name != "" {
			poolNames = append(poolNames, pl.Name)
		}
		if pl.MinHealthy < 0 {
			p.add(path+".min_healthy", "must be 0 or more, got %d", pl.MinHealthy)
		}
	}

	names, serials := map[string]string{}, map[string]string{}
	for i, d := range c.Devices {
		path := fmt.Sprintf("devices[%d]", i)
		if d.Name == "" {
			p.add(path+".name", "required; every device needs a unique name (it is the metric label \"device\")")
		}
		p.unique(names, path+".name", path, "device name", d.Name)
		if d.Serial == "" {
			p.add(path+".serial", "required; set the token serial number the HSM reports (pkcs11-tool -L shows it)")
		}
		p.unique(serials, path+".serial", path, "serial", d.Serial)
		switch {
		case d.Module == "":
			p.add(path+".module", "required; %s", known("module", "modules", moduleNames))
		case modules[d.Module] == "":
			p.add(path+".module", "no module named %q; %s", d.Module, known("module", "modules", moduleNames))
		}
		if d.Pool != "" && pools[d.Pool] == "" {
			p.add(path+".pool", "no pool named %q; %s", d.Pool, known("pool", "pools", poolNames))
		}
		p.oneOf(path+".environment", "environment", d.Environment, environments)
		if ct := d.Contract; ct != (Contract{}) {
			p.oneOf(path+".contract.tier", "tier", ct.Tier, tiers)
			p.oneOf(path+".contract.region", "region", ct.Region, regions)
		}
		if cc := d.Site.Country; cc != "" && !IsCountry(cc) {
			p.add(path+".site.country", "%q is not an ISO 3166 country code; use its two capital letters, e.g. \"GB\" or \"AU\"", cc)
		}
	}

	if v := c.Firmware.Minimum; v != "" && !reVersion.MatchString(v) {
		p.add("firmware.minimum", "%q is not a version; use dotted numbers, e.g. \"12.60\"", v)
	}
	for list, versions := range map[string][]string{"approved": c.Firmware.Approved, "end_of_life": c.Firmware.EndOfLife} {
		for i, v := range versions {
			if !reVersion.MatchString(v) {
				p.add(fmt.Sprintf("firmware.%s[%d]", list, i), "%q is not a version; use dotted numbers, e.g. \"12.60\"", v)
			}
		}
	}

	desks := map[string]string{}
	for i, d := range c.Desks {
		path := fmt.Sprintf("desks[%d]", i)
		if d.Name == "" {
			p.add(path+".name", "required; every desk needs a unique name")
		}
		p.unique(desks, path+".name", path, "desk name", d.Name)
		p.oneOf(path+".role", "role", d.Role, roles)
		if d.Upload != "" && !contains(uploads, d.Upload) {
			p.add(path+".upload", "%q is not a valid upload policy; use one of %s", d.Upload, strings.Join(uploads, ", "))
		}
		c.validateDeskType(p, path, d)
	}
	c.validateEmailOnlyVendor(p)

	c.validateDiagnostics(p)

	c.validateCalendars(p)
	if c.RMA.ReturnDays < 1 {
		p.add("rma.return_days", "must be at least 1 (calendar days to return the faulty unit of an advance replacement), got %d; the default is %d",
			c.RMA.ReturnDays, DefaultReturnDays)
	}
	return p.errs
}

// validateCalendars checks calendars.<region> with the parsers of package
// rma/calendar, the one place their formats are defined.
func (c *Config) validateCalendars(p *problems) {
	for _, region := range slices.Sorted(maps.Keys(c.Calendars)) {
		path := "calendars." + region
		def, ok := calendar.Defaults(region)
		if !ok {
			p.add(path, "%q is not a region; use one of %s", region, strings.Join(regions, ", "))
			continue
		}
		cal := c.Calendars[region]
		if cal.Timezone != "" {
			if _, err := calendar.LoadLocation(cal.Timezone); err != nil {
				p.add(path+".timezone", "%v", err)
			}
		}
		hoursOK := true
		if cal.Hours == "" {
			cal.Hours = def.Hours
		} else if _, err := calendar.ParseHours(cal.Hours); err != nil {
			p.add(path+".hours", "%v", err)
			hoursOK = false
		}
		if cal.RMACutoff == "" {
			continue
		}
		var err error
		if hours, herr := calendar.ParseHours(cal.Hours); hoursOK && herr == nil {
			_, err = calendar.CheckCutoff(cal.RMACutoff, hours)
		} else {
			_, err = calendar.ParseTimeOfDay(cal.RMACutoff)
		}
		if err != nil {
			p.add(path+".rma_cutoff", "%v", err)
		}
	}
}

// validateDeskType checks a desk's type and its type-specific settings.
func (c *Config) validateDeskType(p *problems, path string, d Desk) {
	var dt *deskType
	for i := range deskTypes {
		if deskTypes[i].name == d.Type {
			dt = &deskTypes[i]
		}
	}
	if dt == nil {
		if d.Type == "" {
			p.add(path+".type", "required; use one of %s", strings.Join(DeskTypes(), ", "))
		} else {
			p.add(path+".type", "%q is not a known desk type; use one of %s", d.Type, strings.Join(DeskTypes(), ", "))
		}
		return
	}
	settings, set := d.settings(), d.isSet()
	uses := map[string]bool{}
	for _, r := range dt.required {
		uses[r.name] = true
		if settings[r.name] == "" {
			p.add(path+"."+r.name, "required for a %s desk; %s", dt.name, r.hint)
		}
	}
	for _, o := range dt.optional {
		uses[o] = true
	}
	for _, name := range deskSettingNames {
		if set[name] && !uses[name] {
			p.add(path+"."+name, "not used by a %s desk; remove it", dt.name)
		}
	}
	if dt.check != nil {
		dt.check(d, func(setting, msg string) { p.add(path+"."+setting, "%s", msg) })
	}
	if uses["timeout"] {
		c.positive(p, path+".timeout", d.Timeout, DefaultDeskTimeout)
	}
	if uses["rate_per_minute"] && d.RatePerMinute < 0 {
		p.add(path+".rate_per_minute", "must be 0 or more (0 means no limit), got %d", d.RatePerMinute)
	}
	if uses["phones"] && len(d.Phones) > 0 {
		if d.Role != RoleVendor {
			p.add(path+".phones", "only a desk with role vendor has phones (this one has role %q); remove phones or set role: vendor", d.Role)
			return
		}
		for _, key := range slices.Sorted(maps.Keys(d.Phones)) {
			switch {
			case !contains(regions, key) && !IsCountry(key):
				p.add(path+".phones."+key, "%q is neither a region nor a country; use one of %s, or an ISO 3166 country code such as \"AU\"",
					key, strings.Join(regions, ", "))
			case strings.TrimSpace(d.Phones[key]) == "":
				p.add(path+".phones."+key, "required; set the vendor's support phone number for this region or country, e.g. \"+44 20 7946 0000\"")
			}
		}
	}
}

// positive reports a duration of a list item (a desk's or a command's
// timeout) that is negative, or zero when the file sets it so. Zero in a
// Config built in code means the default (Parse sets it for files).
func (c *Config) positive(p *problems, path string, d, def time.Duration) {
	if d < 0 || (d == 0 && c.inFile(path)) {
		p.add(path, "must be greater than zero, got %q; the default is %q", d.String(), shortDuration(def))
	}
}

// inFile reports whether the loaded file sets the field at path.
func (c *Config) inFile(path string) bool {
	if c.lines == nil {
		return false
	}
	_, ok := c.lines.byPath[path]
	return ok
}

// validateDiagnostics checks the diagnostics section.
func (c *Config) validateDiagnostics(p *problems) {
	names := map[string]string{}
	for i, cmd := range c.Diagnostics.Commands {
		path := fmt.Sprintf("diagnostics.commands[%d]", i)
		if cmd.Name == "" {
			p.add(path+".name", "required; every diagnostics command needs a unique name (it names the command's output in the bundle)")
		}
		p.unique(names, path+".name", path, "command name", cmd.Name)
		switch {
		case len(cmd.Command) == 0:
			p.add(path+".command", "required; set the program and its arguments as a list, e.g. [\"/opt/nfast/bin/enquiry\"]")
		case strings.TrimSpace(cmd.Command[0]) == "":
			p.add(path+".command[0]", "the program is empty; set its path, e.g. \"/opt/nfast/bin/enquiry\"")
		}
		c.positive(p, path+".timeout", cmd.Timeout, DefaultCommandTimeout)
	}
	for i, pattern := range c.Diagnostics.Redact {
		path := fmt.Sprintf("diagnostics.redact[%d]", i)
		if pattern == "" {
			p.add(path, "empty pattern (it would match everywhere); remove it")
		} else if _, err := regexp.Compile(pattern); err != nil {
			p.add(path, "%q is not a valid regular expression: %v", pattern, err)
		}
	}
	if c.Diagnostics.MaxBundleBytes <= 0 {
		p.add("diagnostics.max_bundle_bytes", "must be greater than zero, got %d; the default is %d (20 MiB)",
			c.Diagnostics.MaxBundleBytes, DefaultMaxBundleBytes)
	}
	if c.Diagnostics.Retention < 1 {
		p.add("diagnostics.retention", "must be at least 1 (bundles kept per device), got %d; the default is %d",
			c.Diagnostics.Retention, DefaultRetention)
	}
}

// known lists the defined names for "no module named ..." messages.
func known(what, section string, names []string) string {
	if len(names) == 0 {
		return fmt.Sprintf("the file defines no %s: add one under %q", section, section)
	}
	return fmt.Sprintf("defined %s: %s", section, strings.Join(names, ", "))
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// CompareVersions compares dotted numeric versions such as "12.60" segment by
// segment as numbers (a missing segment counts as 0): -1 if a < b, 0 if equal,
// +1 if a > b. Non-numeric segments count as 0.
func CompareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
	}
	return 0
}

// CheckFiles reports files the configuration names that are not usable yet:
// missing or unreadable module libraries, PIN files and desk secret/token
// files, and secret files any user may read. Load does not require them (the
// probe checks libraries when it runs); `config check` prints these as warnings.
func (c *Config) CheckFiles() []error {
	var errs []error
	check := func(path, file string, secret bool) {
		if file == "" {
			return
		}
		e := &FieldError{File: c.File, Line: c.lineOf(path), Path: path}
		fi, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			e.Msg, e.Err = fmt.Sprintf("file %s does not exist", file), err
		case err != nil:
			e.Msg, e.Err = fmt.Sprintf("cannot use %s: %v", file, err), err
		case fi.IsDir():
			e.Msg = fmt.Sprintf("%s is a directory; name a file", file)
		case secret && fi.Mode().Perm()&0o004 != 0:
			e.Msg = fmt.Sprintf("secret file %s is readable by any user; run chmod o-rwx %s", file, file)
		default:
			return
		}
		errs = append(errs, e)
	}
	for i, m := range c.Modules {
		check(fmt.Sprintf("modules[%d].library", i), m.Library, false)
	}
	for i, d := range c.Devices {
		check(fmt.Sprintf("devices[%d].pin_file", i), d.PINFile, true)
	}
	for i, d := range c.Desks {
		check(fmt.Sprintf("desks[%d].secret_file", i), d.SecretFile, true)
		check(fmt.Sprintf("desks[%d].token_file", i), d.TokenFile, true)
	}
	check("api.token_file", c.API.TokenFile, true)
	return errs
}
