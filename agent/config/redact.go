package config

import "net/url"

// RedactURL is what of a desk URL may appear outside the configuration
// (bundles, logs, errors): its scheme and host. Paths and queries of
// webhook URLs often carry the credential itself (/hook/<token>, ?sig=,
// ?code=), and user info a password. A URL that does not parse gives "".
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// SensitiveEnv reports whether a module environment variable's name
// suggests it holds a secret (PIN, PASSWORD, TOKEN, KEY, ...).
func SensitiveEnv(name string) bool { return sensitiveEnv.MatchString(name) }
