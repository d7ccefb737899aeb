package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
)

// emailDeskType is the email desk's entry of deskTypes.
var emailDeskType = deskType{
	name: DeskEmail,
	required: []deskSetting{
		{"smtp", "set the SMTP relay as host:port, e.g. smtp.example.com:587"},
		{"from", "set the sender address, e.g. hsm-agent@example.com"},
	},
	optional: []string{"to", "tls", "username", "password_file", "max_attachment_bytes", "ca_file", "timeout", "rate_per_minute", "phones"},
	check:    checkEmailDesk,
}

// alertmanagerDeskType is the Alertmanager desk's entry of deskTypes.
var alertmanagerDeskType = deskType{
	name:     DeskAlertmanager,
	required: []deskSetting{{"url", "set Alertmanager's base URL, e.g. http://alertmanager.example:9093"}},
	optional: []string{"timeout", "rate_per_minute"},
	check: func(d Desk, report func(string, string)) {
		if u, err := url.Parse(d.URL); d.URL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			report("url", fmt.Sprintf("%q is not an http or https URL; e.g. http://alertmanager.example:9093", d.URL))
		}
	},
}

// checkEmailDesk checks the values of an email desk's settings.
func checkEmailDesk(d Desk, report func(setting, msg string)) {
	if d.SMTP != "" {
		host, port, err := net.SplitHostPort(d.SMTP)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			report("smtp", fmt.Sprintf("%q is not host:port; e.g. smtp.example.com:587", d.SMTP))
		}
	}
	if tls := []string{TLSStartTLS, TLSImplicit, TLSNone}; d.TLS != "" && !contains(tls, d.TLS) {
		report("tls", fmt.Sprintf("%q is not a TLS mode; use one of %s (default %s)", d.TLS, strings.Join(tls, ", "), TLSStartTLS))
	}
	switch {
	case d.Username != "" && d.PasswordFile == "":
		report("username", "username and password_file go together: set password_file for SMTP AUTH, or remove username")
	case d.Username == "" && d.PasswordFile != "":
		report("password_file", "username and password_file go together: set username for SMTP AUTH, or remove password_file")
	}
	if d.From != "" {
		if _, err := mail.ParseAddress(d.From); err != nil {
			report("from", fmt.Sprintf("%q is not an e-mail address; e.g. hsm-agent@example.com", d.From))
		}
	}
	if len(d.To) == 0 {
		report("to", "required for an email desk; list the recipients, e.g. [support@vendor.example]")
	}
	for i, to := range d.To {
		if _, err := mail.ParseAddress(to); err != nil {
			report(fmt.Sprintf("to[%d]", i), fmt.Sprintf("%q is not an e-mail address; e.g. support@vendor.example", to))
		}
	}
	if d.MaxAttachmentBytes < 0 {
		report("max_attachment_bytes", fmt.Sprintf("must be 0 or more (0 means the default, %d), got %d", DefaultMaxAttachmentBytes, d.MaxAttachmentBytes))
	}
}

// validateEmailOnlyVendor refuses e-mail as the only vendor channel
// without a pager desk: desks log e-mail as severity 3, so a severity-1
// case cannot rely on it.
func (c *Config) validateEmailOnlyVendor(p *problems) {
	first, email, other, pager := -1, 0, 0, false
	for i, d := range c.Desks {
		switch {
		case d.Role == RolePager:
			pager = true
		case d.Role == RoleVendor && d.Type == DeskEmail:
			email++
			if first < 0 {
				first = i
			}
		case d.Role == RoleVendor:
			other++
		}
	}
	if email > 0 && other == 0 && !pager {
		p.add(fmt.Sprintf("desks[%d].type", first), "an email desk is the only vendor channel and there is no pager desk: "+
			"vendor desks log e-mail as severity 3, so a severity-1 case would wait; add a desk with role pager "+
			"(e.g. a webhook to the on-call tool) or a vendor desk that is not e-mail")
	}
}
