package config

import (
	"os"
	"path/filepath"
	"strings"
)

// Kinds of secret that systemd hands the daemon as credentials, for
// CredentialName.
const (
	// CredentialPIN is the user PIN of an inventory device; the name is the device's name.
	CredentialPIN = "pin"
	// CredentialDeskSecret is a desk's signing secret (webhook); the name is the desk's name.
	CredentialDeskSecret = "desk-secret"
	// CredentialDeskToken is a desk's API token; the name is the desk's name.
	CredentialDeskToken = "desk-token"
	// CredentialDeskPassword is a desk's password (e.g. email SMTP auth); the name is the desk's name.
	CredentialDeskPassword = "desk-password"
)

// CredentialName returns the name under which systemd delivers a secret in
// $CREDENTIALS_DIRECTORY: the unit loads /etc/hsm-agent/credentials/pins and
// .../desks with LoadCredential=pin:DIR and LoadCredential=desk:DIR, and
// systemd names each file of such a directory "<ID>_<file name>", so
//
//	CredentialName(CredentialPIN, "hsm-a")           = "pin_hsm-a"          (credentials/pins/hsm-a)
//	CredentialName(CredentialDeskSecret, "vendor")   = "desk_vendor.secret" (credentials/desks/vendor.secret)
//	CredentialName(CredentialDeskToken, "vendor")    = "desk_vendor.token"  (credentials/desks/vendor.token)
//
// Pass the result to config.ReadCredential with the config's *_file path as
// the fallback. It returns "" (no credential: config.ReadCredential then
// reads the file) for an unknown kind or a name that cannot be a file name
// (empty, ".", "..", or holding '/').
func CredentialName(kind, name string) string {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return ""
	}
	switch kind {
	case CredentialPIN:
		return "pin_" + name
	case CredentialDeskSecret:
		return "desk_" + name + ".secret"
	case CredentialDeskToken:
		return "desk_" + name + ".token"
	case CredentialDeskPassword:
		return "desk_" + name + ".password"
	}
	return ""
}

// CredentialPath returns the file a secret is read from: the systemd
// credential `name` when $CREDENTIALS_DIRECTORY holds it, else fallbackPath;
// source says which (SourceCredential or SourceFile), for the log. It is for
// readers that need a path rather than the value (the self-test re-reads the
// PIN file and notices when it changes).
func CredentialPath(name, fallbackPath string) (path, source string) {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && name != "" && CredentialNameValid(name) {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, SourceCredential
		}
	}
	return fallbackPath, SourceFile
}

// CredentialNameValid reports whether name can be a credential file name.
func CredentialNameValid(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/')
}
