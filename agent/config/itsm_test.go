package config

// The zendesk and servicenow desks' invalid configurations, added to the
// table of TestInvalidConfigs.
func init() {
	for name, want := range map[string]string{
		"invalid-desk-zendesk-email.yml":           `testdata/invalid-desk-zendesk-email.yml:2: desks[0].email: required for a zendesk desk; set the login of the Zendesk agent the API token belongs to`,
		"invalid-desk-zendesk-email-format.yml":    `testdata/invalid-desk-zendesk-email-format.yml:6: desks[0].email: "hsm-agent" is not an e-mail address; set the Zendesk agent's login, e.g. hsm-agent@example.com`,
		"invalid-desk-zendesk-token.yml":           `testdata/invalid-desk-zendesk-token.yml:2: desks[0].token_file: required for a zendesk desk; set the file holding the Zendesk API token`,
		"invalid-desk-zendesk-url.yml":             `testdata/invalid-desk-zendesk-url.yml:5: desks[0].url: "example.zendesk.com" is not an http or https URL; e.g. https://example.zendesk.com`,
		"invalid-desk-zendesk-unused.yml":          `testdata/invalid-desk-zendesk-unused.yml:8: desks[0].assignment_group: not used by a zendesk desk; remove it`,
		"invalid-desk-servicenow-group.yml":        `testdata/invalid-desk-servicenow-group.yml:2: desks[0].assignment_group: required for a servicenow desk; set the group incidents are assigned to (its name or sys_id)`,
		"invalid-desk-servicenow-auth-both.yml":    `testdata/invalid-desk-servicenow-auth-both.yml:9: desks[0].token_file: set either token_file (an OAuth bearer token) or username + password_file, not both`,
		"invalid-desk-servicenow-auth-missing.yml": `testdata/invalid-desk-servicenow-auth-missing.yml:2: desks[0].username: required for a servicenow desk without token_file; set username + password_file, or token_file`,
		"invalid-desk-servicenow-password.yml":     `testdata/invalid-desk-servicenow-password.yml:2: desks[0].password_file: required with username; set the file holding the ServiceNow user's password`,
		"invalid-desk-servicenow-username.yml":     `testdata/invalid-desk-servicenow-username.yml:2: desks[0].username: required with password_file; set the ServiceNow user the password belongs to`,
	} {
		invalid[name] = want
	}
}
