// Package systemd carries hsm-agent's hardened systemd unit and its sysusers
// and tmpfiles snippets, embedded from the files the packages ship, so that
// `hsm-agent service install` on a host without the package installs exactly
// the same unit.
package systemd

import (
	_ "embed"
	"fmt"
	"strings"
)

// Unit is the hardened service unit, installed as hsm-agent.service.
//
//go:embed hsm-agent.service
var Unit string

// Sysusers is the systemd-sysusers snippet creating the hsm-agent user,
// installed as /usr/lib/sysusers.d/hsm-agent.conf.
//
//go:embed sysusers.d/hsm-agent.conf
var Sysusers string

// Tmpfiles is the systemd-tmpfiles snippet creating the state and credential
// directories, installed as /usr/lib/tmpfiles.d/hsm-agent.conf.
//
//go:embed tmpfiles.d/hsm-agent.conf
var Tmpfiles string

// CredentialsCompat is a drop-in that turns off Unit's LoadCredential=
// directories, for systemd versions below CredentialDirMinVersion, where they
// would stop the service from starting. Install it as
// /etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf.
//
//go:embed compat/50-credentials-compat.conf
var CredentialsCompat string

// CredentialDirMinVersion is the first systemd version whose LoadCredential=
// accepts a directory (systemd NEWS, version 251).
const CredentialDirMinVersion = 251

// DefaultExecStart is the ExecStart= command line of Unit.
const DefaultExecStart = "/usr/bin/hsm-agent run --config /etc/hsm-agent/config.yml"

// Render returns Unit with its ExecStart= line changed to run the binary exe
// with the configuration file config, for installs where the binary is not
// /usr/bin/hsm-agent. Both must be absolute paths without white space,
// quotes, backslashes, '$' or '%' (characters systemd would interpret).
func Render(exe, config string) (string, error) {
	for _, p := range []struct{ name, value string }{{"binary", exe}, {"config", config}} {
		if !strings.HasPrefix(p.value, "/") {
			return "", fmt.Errorf("systemd unit: %s path %q must be absolute", p.name, p.value)
		}
		if strings.ContainsAny(p.value, " \t\r\n\"'\\$%;") {
			return "", fmt.Errorf("systemd unit: %s path %q contains a character systemd would interpret (space, quote, backslash, $, %%, ;): move the file to a plain path", p.name, p.value)
		}
	}
	old := "ExecStart=" + DefaultExecStart + "\n"
	if strings.Count(Unit, old) != 1 {
		return "", fmt.Errorf("systemd unit: embedded hsm-agent.service has no single line %q", strings.TrimSpace(old))
	}
	return strings.Replace(Unit, old, "ExecStart="+exe+" run --config "+config+"\n", 1), nil
}
