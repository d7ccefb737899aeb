package config

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// The desk types: the one table of which settings each type requires
// and may use, and their value checks.

// deskSetting is a type-specific desk setting a type needs.
type deskSetting struct {
	name string // YAML name, a key of Desk.settings
	hint string // what to put there, for the "required" message
}

// deskType says which type-specific settings a desk type requires and which
// it may use; check, if set, validates their values.
type deskType struct {
	name     string
	required []deskSetting
	optional []string
	check    func(d Desk, report func(setting, msg string))
}

// deskTypes is the one list of desk types. A new desk adds its entry here
// (and its settings to Desk and Desk.settings).
var deskTypes = []deskType{
	{
		name:     DeskWebhook,
		required: []deskSetting{{"url", "set the URL that receives case events, e.g. https://support.example/hooks/hsm"}},
		optional: []string{"secret_file", "phones", "timeout", "rate_per_minute"},
		check: func(d Desk, report func(string, string)) {
			if u, err := url.Parse(d.URL); d.URL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
				report("url", fmt.Sprintf("%q is not an http or https URL; e.g. https://support.example/hooks/hsm", d.URL))
			}
		},
	},
	{
		name:     DeskSpool,
		required: []deskSetting{{"dir", "set the directory to write case events to, e.g. /var/spool/hsm-agent"}},
		optional: []string{"phones", "rate_per_minute"},
	},
	{
		name: DeskRT,
		required: []deskSetting{
			{"url", "set the RT base URL, e.g. https://rt.example.com (REST2 is under /REST/2.0/)"},
			{"queue", "set the RT queue tickets go to, e.g. General"},
		},
		optional: []string{"token_file", "username", "password_file", "dedup_field", "phones", "timeout", "rate_per_minute"},
		check:    checkRT,
	},
	{
		name: DeskJira,
		required: []deskSetting{
			{"url", "set the Jira base URL, e.g. https://example.atlassian.net"},
			{"variant", "use one of " + strings.Join(jiraVariants, ", ")},
			{"token_file", "set a file holding the Jira API token (cloud, with email) or personal access token (datacenter)"},
		},
		optional: []string{"project", "issue_type", "email", "service_desk_id", "request_type_id", "priorities", "timeout", "rate_per_minute", "phones"},
		check:    checkJira,
	},
	{
		name:     DeskPagerDuty,
		required: []deskSetting{{"routing_key_file", "set a file holding the Events API v2 routing key of the PagerDuty service"}},
		optional: []string{"url", "timeout", "rate_per_minute"},
		check:    checkPagerDuty,
	},
	{
		name: DeskZendesk,
		required: []deskSetting{{"url", "set the Zendesk address, e.g. https://example.zendesk.com"},
			{"email", "set the login of the Zendesk agent the API token belongs to"},
			{"token_file", "set the file holding the Zendesk API token"}},
		optional: []string{"phones", "timeout", "rate_per_minute"},
		check: func(d Desk, report func(string, string)) {
			checkHTTPURL(d, "https://example.zendesk.com", report)
			if d.Email != "" && !strings.Contains(d.Email, "@") {
				report("email", fmt.Sprintf("%q is not an e-mail address; set the Zendesk agent's login, e.g. hsm-agent@example.com", d.Email))
			}
		},
	},
	{
		name: DeskServiceNow,
		required: []deskSetting{{"url", "set the instance address, e.g. https://example.service-now.com"},
			{"assignment_group", "set the group incidents are assigned to (its name or sys_id)"}},
		optional: []string{"username", "password_file", "token_file", "phones", "timeout", "rate_per_minute"},
		check: func(d Desk, report func(string, string)) {
			checkHTTPURL(d, "https://example.service-now.com", report)
			switch {
			case d.TokenFile != "" && (d.Username != "" || d.PasswordFile != ""):
				report("token_file", "set either token_file (an OAuth bearer token) or username + password_file, not both")
			case d.TokenFile == "" && d.Username == "" && d.PasswordFile == "":
				report("username", "required for a servicenow desk without token_file; set username + password_file, or token_file")
			case d.TokenFile == "" && d.Username == "":
				report("username", "required with password_file; set the ServiceNow user the password belongs to")
			case d.TokenFile == "" && d.PasswordFile == "":
				report("password_file", "required with username; set the file holding the ServiceNow user's password")
			}
		},
	},
	emailDeskType,
	alertmanagerDeskType,
}

// checkRT checks an rt desk's URL and that it has exactly one way to log in.
func checkRT(d Desk, report func(string, string)) {
	checkHTTPURL(d, "https://rt.example.com", report)
	switch {
	case d.TokenFile != "" && (d.Username != "" || d.PasswordFile != ""):
		report("token_file", "set either token_file or username and password_file, not both")
	case d.TokenFile == "" && d.Username == "" && d.PasswordFile == "":
		report("token_file", "required for an rt desk; set token_file to a file holding an RT auth token, or username and password_file")
	case d.TokenFile == "" && d.Username == "":
		report("username", "required with password_file; set the RT user name, e.g. hsm-agent")
	case d.TokenFile == "" && d.PasswordFile == "":
		report("password_file", "required with username; set a file holding the RT user's password")
	}
}

// jiraVariants are the values of a jira desk's variant.
var jiraVariants = []string{JiraCloud, JiraDataCenter, JiraServiceManagement}

// checkHTTPURL reports a set url that is not an http or https URL.
func checkHTTPURL(d Desk, example string, report func(string, string)) {
	if u, err := url.Parse(d.URL); d.URL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		report("url", fmt.Sprintf("%q is not an http or https URL; e.g. %s", d.URL, example))
	}
}

// checkJira checks a jira desk's variant and the settings each variant
// needs or cannot use, and its priority mapping.
func checkJira(d Desk, report func(string, string)) {
	checkHTTPURL(d, "https://example.atlassian.net", report)
	if d.Variant != "" && !slices.Contains(jiraVariants, d.Variant) {
		report("variant", fmt.Sprintf("%q is not a jira variant; use one of %s", d.Variant, strings.Join(jiraVariants, ", ")))
	}
	switch d.Variant {
	case JiraCloud, JiraDataCenter:
		if d.Project == "" {
			report("project", "required for a jira "+d.Variant+" desk; set the project key issues go to, e.g. OPS")
		}
		if d.IssueType == "" {
			report("issue_type", "required for a jira "+d.Variant+" desk; set the issue type name, e.g. Incident")
		}
		for _, s := range [][2]string{{"service_desk_id", d.ServiceDeskID}, {"request_type_id", d.RequestTypeID}} {
			if s[1] != "" {
				report(s[0], "only a jira servicemanagement desk uses it; remove it or set variant: servicemanagement")
			}
		}
	case JiraServiceManagement:
		if d.ServiceDeskID == "" {
			report("service_desk_id", "required for a jira servicemanagement desk; set the service desk's ID, e.g. \"4\"")
		}
		if d.RequestTypeID == "" {
			report("request_type_id", "required for a jira servicemanagement desk; set the request type's ID, e.g. \"25\"")
		}
		for _, s := range [][2]string{{"project", d.Project}, {"issue_type", d.IssueType}} {
			if s[1] != "" {
				report(s[0], "not used by a jira servicemanagement desk (service_desk_id and request_type_id choose them); remove it")
			}
		}
	}
	switch {
	case d.Variant == JiraCloud && d.Email == "":
		report("email", "required for a jira cloud desk; set the Atlassian account e-mail the API token belongs to")
	case d.Variant == JiraDataCenter && d.Email != "":
		report("email", "not used by a jira datacenter desk (token_file holds a personal access token); remove it")
	}
	for _, sev := range slices.Sorted(maps.Keys(d.Priorities)) {
		switch {
		case sev < 1 || sev > 4:
			report(fmt.Sprintf("priorities.%d", sev), "not a severity; use 1, 2, 3 or 4")
		case strings.TrimSpace(d.Priorities[sev]) == "":
			report(fmt.Sprintf("priorities.%d", sev), "required; set the Jira priority name for this severity, e.g. Highest")
		}
	}
}

// checkPagerDuty checks a pagerduty desk's URL and role: it only pages.
func checkPagerDuty(d Desk, report func(string, string)) {
	checkHTTPURL(d, DefaultPagerDutyURL, report)
	if d.Role != "" && d.Role != RolePager {
		report("role", fmt.Sprintf("a pagerduty desk pages people: it takes role %s, not %q", RolePager, d.Role))
	}
}

// DeskTypes lists the desk types this version knows.
func DeskTypes() []string {
	names := make([]string, len(deskTypes))
	for i, t := range deskTypes {
		names[i] = t.name
	}
	return names
}

// deskSettingNames lists every type-specific setting, in file order.
var deskSettingNames = []string{"url", "secret_file", "token_file", "dir", "phones", "timeout", "rate_per_minute",
	"queue", "username", "password_file", "dedup_field",
	"variant", "project", "issue_type", "email", "service_desk_id", "request_type_id", "priorities", "routing_key_file",
	"assignment_group", "smtp", "tls", "from", "to", "max_attachment_bytes", "ca_file"}

// settings returns the type-specific string settings by YAML name.
func (d Desk) settings() map[string]string {
	return map[string]string{"url": d.URL, "secret_file": d.SecretFile, "token_file": d.TokenFile, "dir": d.Dir,
		"queue": d.Queue, "username": d.Username, "password_file": d.PasswordFile, "dedup_field": d.DedupField,
		"variant": d.Variant, "project": d.Project, "issue_type": d.IssueType, "email": d.Email,
		"service_desk_id": d.ServiceDeskID, "request_type_id": d.RequestTypeID, "routing_key_file": d.RoutingKeyFile,
		"assignment_group": d.AssignmentGroup,
		"smtp":             d.SMTP, "tls": d.TLS, "from": d.From, "ca_file": d.CAFile}
}

// isSet reports which type-specific settings hold a value, by YAML name.
func (d Desk) isSet() map[string]bool {
	set := map[string]bool{"phones": len(d.Phones) > 0, "timeout": d.Timeout != 0, "rate_per_minute": d.RatePerMinute != 0,
		"priorities": len(d.Priorities) > 0, "to": len(d.To) > 0, "max_attachment_bytes": d.MaxAttachmentBytes != 0}
	for name, v := range d.settings() {
		set[name] = v != ""
	}
	return set
}

// deskTypeUses reports whether desks of the named type use a setting.
func deskTypeUses(typ, setting string) bool {
	for _, dt := range deskTypes {
		if dt.name == typ {
			return slices.ContainsFunc(dt.required, func(r deskSetting) bool { return r.name == setting }) ||
				slices.Contains(dt.optional, setting)
		}
	}
	return false
}
