package agent

import "strings"

// Kinds of secret that systemd hands the daemon as credentials, for
// CredentialName.
const (
	// CredentialPIN is the user PIN of an inventory device; the name is the device's name.
	CredentialPIN = "pin"
	// CredentialDeskSecret is a desk's signing secret (webhook); the name is the desk's name.
	CredentialDeskSecret = "desk-secret"
	// CredentialDeskToken is a desk's API token; the name is the desk's name.
	CredentialDeskToken = "desk-token"
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
	}
	return ""
}
