package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCredentialPathPrefersSystemdCredential(t *testing.T) {
	dir := t.TempDir()
	fallback := filepath.Join(t.TempDir(), "hsm-a")
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if p, src := CredentialPath(CredentialName(CredentialPIN, "hsm-a"), fallback); p != fallback || src != SourceFile {
		t.Fatalf("without the credential: %q %q, want the fallback file", p, src)
	}
	cred := filepath.Join(dir, "pin_hsm-a")
	if err := os.WriteFile(cred, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, src := CredentialPath(CredentialName(CredentialPIN, "hsm-a"), fallback); p != cred || src != SourceCredential {
		t.Fatalf("with the credential: %q %q, want %q from the credential", p, src, cred)
	}
	if p, _ := CredentialPath("../escape", fallback); p != fallback {
		t.Fatalf("a name with a slash must not leave the credentials directory: %q", p)
	}
}
