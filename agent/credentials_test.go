package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/systemd"
)

func TestCredentialName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ kind, name, want string }{
		{config.CredentialPIN, "hsm-a", "pin_hsm-a"},
		{config.CredentialDeskSecret, "vendor", "desk_vendor.secret"},
		{config.CredentialDeskToken, "vendor", "desk_vendor.token"},
		{config.CredentialDeskToken, "ops.eu", "desk_ops.eu.token"},
		{"password", "hsm-a", ""},
		{config.CredentialPIN, "", ""},
		{config.CredentialPIN, "..", ""},
		{config.CredentialPIN, "a/b", ""},
	} {
		if got := config.CredentialName(tc.kind, tc.name); got != tc.want {
			t.Errorf("config.CredentialName(%q, %q) = %q, want %q", tc.kind, tc.name, got, tc.want)
		}
	}
}

// The names config.CredentialName builds are the ones the shipped unit's
// LoadCredential=ID:DIR lines produce: systemd names each file FILE of DIR
// "ID_FILE".
func TestCredentialNamesMatchTheUnit(t *testing.T) {
	t.Parallel()
	loads := map[string]string{} // directory -> credential ID
	for _, line := range strings.Split(systemd.Unit, "\n") {
		if v, ok := strings.CutPrefix(line, "LoadCredential="); ok {
			id, dir, found := strings.Cut(v, ":")
			if !found {
				t.Fatalf("unit line %q: no ID:PATH", line)
			}
			loads[dir] = id
		}
	}
	for _, tc := range []struct {
		kind, name, dir, file string
	}{
		{config.CredentialPIN, "hsm-a", "/etc/hsm-agent/credentials/pins", "hsm-a"},
		{config.CredentialDeskSecret, "vendor", "/etc/hsm-agent/credentials/desks", "vendor.secret"},
		{config.CredentialDeskToken, "vendor", "/etc/hsm-agent/credentials/desks", "vendor.token"},
	} {
		id, ok := loads[tc.dir]
		if !ok {
			t.Errorf("the unit has no LoadCredential=ID:%s (have %v)", tc.dir, loads)
			continue
		}
		if got, want := config.CredentialName(tc.kind, tc.name), id+"_"+tc.file; got != want {
			t.Errorf("config.CredentialName(%q, %q) = %q, but the unit delivers %s/%s as %q", tc.kind, tc.name, got, tc.dir, tc.file, want)
		}
	}
}

// config.ReadCredential finds a secret under config.CredentialName's name in
// $CREDENTIALS_DIRECTORY before the fallback file. Not parallel: Setenv.
func TestCredentialNameWithReadCredential(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	fallback := filepath.Join(dir, "pin-file")
	if err := os.WriteFile(filepath.Join(creds, "pin_hsm-a"), []byte("from-credential\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fallback, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	s, source, err := config.ReadCredential(config.CredentialName(config.CredentialPIN, "hsm-a"), fallback)
	if err != nil || s.Reveal() != "from-credential" || source != config.SourceCredential {
		t.Errorf("hsm-a: %q from %s, %v; want the credential", s.Reveal(), source, err)
	}
	s, source, err = config.ReadCredential(config.CredentialName(config.CredentialPIN, "hsm-b"), fallback)
	if err != nil || s.Reveal() != "from-file" || source != config.SourceFile {
		t.Errorf("hsm-b (no credential): %q from %s, %v; want the file", s.Reveal(), source, err)
	}
}
