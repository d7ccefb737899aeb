package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// redacted is what a Secret prints as, wherever it is printed.
const redacted = "<secret>"

// Secret is a PIN, token or key. Every way of printing or encoding it gives
// "<secret>"; only Reveal returns the value. (fmt cannot call methods on
// unexported struct fields, so keep a Secret in an exported field or a
// variable, never in an unexported field of a struct that gets printed.)
type Secret string

// Reveal returns the plaintext, for handing to the HSM or desk that needs it.
func (s Secret) Reveal() string { return string(s) }

// String returns "<secret>".
func (s Secret) String() string { return redacted }

// GoString returns "<secret>" (for %#v).
func (s Secret) GoString() string { return redacted }

// Format writes "<secret>" for every verb (%s, %v, %q, %x, ...).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue makes slog print "<secret>".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "<secret>".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON returns "<secret>" as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalYAML returns "<secret>".
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

// Credential sources reported by ReadCredential.
const (
	SourceCredential = "credential" // $CREDENTIALS_DIRECTORY (systemd LoadCredential=)
	SourceFile       = "file"       // the *_file path of the configuration
)

// ReadSecret reads a secret from a file, dropping trailing newlines. An
// unreadable or empty file is an error naming the path.
func ReadSecret(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("read secret: %s is empty; write the secret into it", path)
	}
	return Secret(s), nil
}

// ReadCredential reads the systemd credential name from $CREDENTIALS_DIRECTORY
// when that directory is set and holds it, and otherwise the file
// fallbackPath. source (SourceCredential or SourceFile) says which was used,
// for the log.
func ReadCredential(name, fallbackPath string) (secret Secret, source string, err error) {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && name != "" {
		if strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return "", "", fmt.Errorf("credential name %q is not a plain file name", name)
		}
		p := filepath.Join(dir, name)
		_, err := os.Stat(p)
		switch {
		case err == nil:
			s, err := ReadSecret(p)
			return s, SourceCredential, err
		case !errors.Is(err, fs.ErrNotExist):
			return "", SourceCredential, fmt.Errorf("read credential %q: %w", name, err)
		}
	}
	if fallbackPath == "" {
		return "", "", fmt.Errorf("no credential %q in $CREDENTIALS_DIRECTORY and no file configured; set the *_file setting or LoadCredential=%s:PATH", name, name)
	}
	s, err := ReadSecret(fallbackPath)
	return s, SourceFile, err
}
