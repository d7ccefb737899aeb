package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecretNeverPrinted loads a configuration whose PIN and desk secret files
// hold a planted plaintext, reads them as Secrets, and dumps everything every
// way the agent might print it.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	const plain = "pl4nted-S3CRET-4711"
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "hsm-a.pin")
	keyFile := filepath.Join(dir, "vendor.key")
	writeFile(t, pinFile, plain+"\n")
	writeFile(t, keyFile, plain)
	cfgFile := filepath.Join(dir, "config.yml")
	writeFile(t, cfgFile, `modules:
  - {name: soft, library: /usr/lib/softhsm/libsofthsm2.so}
devices:
  - {name: hsm-a, serial: "1", module: soft, environment: production, pin_file: `+pinFile+`}
desks:
  - {name: vendor, type: webhook, role: vendor, url: "https://support.example/h", secret_file: `+keyFile+`}
`)
	cfg, err := Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := ReadSecret(cfg.Devices[0].PINFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadSecret(cfg.Desks[0].SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	if pin.Reveal() != plain || key.Reveal() != plain {
		t.Fatalf("the secrets were not read: %d and %d bytes", len(pin.Reveal()), len(key.Reveal()))
	}
	type holder struct {
		Config  Config
		PIN     Secret
		Ptr     *Secret
		ByName  map[string]Secret
		List    []Secret
		Any     any
		Comment string
	}
	h := holder{Config: *cfg, PIN: pin, Ptr: &key, ByName: map[string]Secret{"hsm-a": pin},
		List: []Secret{pin, key}, Any: pin, Comment: "not secret"}

	var dumps []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		dumps = append(dumps, fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h), fmt.Sprintf(verb, pin), fmt.Sprintf(verb, &pin))
	}
	dumps = append(dumps, fmt.Sprint(pin, key), fmt.Sprintln(h), pin.String(), pin.GoString())
	for _, v := range []any{h, pin, cfg} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		dumps = append(dumps, string(j), string(y))
	}
	text, _ := pin.MarshalText()
	dumps = append(dumps, string(text))
	for _, newHandler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var b bytes.Buffer
		log := slog.New(newHandler(&b))
		log.Info("loaded", "holder", h, "pin", pin, "ptr", &key, "config", cfg, slog.Group("g", "secret", key))
		log.With("pin", pin).Error("login failed", "err", fmt.Errorf("login with %v: %w", pin, os.ErrPermission))
		dumps = append(dumps, b.String())
	}
	red, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	dumps = append(dumps, string(red))

	hexPlain := fmt.Sprintf("%x", plain)
	for i, d := range dumps {
		if strings.Contains(d, plain) || strings.Contains(strings.ToLower(d), hexPlain) {
			t.Errorf("dump %d leaks the secret:\n%s", i, d)
		}
	}
	if all := strings.Join(dumps, "\n"); !strings.Contains(all, "<secret>") || !strings.Contains(all, "not secret") {
		t.Errorf("dumps do not show the placeholder and the plain fields:\n%s", all)
	}
}

func TestSecretFormats(t *testing.T) {
	t.Parallel()
	s := Secret("1234")
	var j string
	if b, err := json.Marshal(s); err != nil || json.Unmarshal(b, &j) != nil {
		t.Fatalf("json: %s %v", b, err)
	}
	y, _ := yaml.Marshal(map[string]Secret{"pin": s})
	for got, want := range map[string]string{
		fmt.Sprintf("%v|%s|%q|%#v|%x", s, s, s, s, s): "<secret>|<secret>|<secret>|<secret>|<secret>",
		j:          "<secret>",
		string(y):  "pin: <secret>\n",
		s.Reveal(): "1234",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestReadSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for content, want := range map[string]string{"1234\n": "1234", "1234\r\n": "1234", "12 34": "12 34", "ab\n\n": "ab"} {
		p := filepath.Join(dir, "s")
		writeFile(t, p, content)
		got, err := ReadSecret(p)
		if err != nil || got.Reveal() != want {
			t.Errorf("ReadSecret(%q) = %q, %v; want %q", content, got.Reveal(), err, want)
		}
	}
	missing := filepath.Join(dir, "missing")
	if _, err := ReadSecret(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("ReadSecret(missing) error %v does not name %s", err, missing)
	}
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	if _, err := ReadSecret(empty); err == nil || err.Error() != "read secret: "+empty+" is empty; write the secret into it" {
		t.Errorf("ReadSecret(empty) = %v", err)
	}
}

// Not parallel: it sets $CREDENTIALS_DIRECTORY.
func TestReadCredential(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(creds, "hsm-a.pin"), "from-credential\n")
	fallback := filepath.Join(dir, "hsm-a.pin")
	writeFile(t, fallback, "from-file\n")

	read := func(name, path string) (string, string, error) {
		s, src, err := ReadCredential(name, path)
		return s.Reveal(), src, err
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if s, src, err := read("hsm-a.pin", fallback); err != nil || s != "from-credential" || src != SourceCredential {
		t.Errorf("with credential: %q %q %v", s, src, err)
	}
	if s, src, err := read("other.pin", fallback); err != nil || s != "from-file" || src != SourceFile {
		t.Errorf("credential absent: %q %q %v", s, src, err)
	}
	if _, _, err := read("../hsm-a.pin", fallback); err == nil {
		t.Error("a credential name with a slash must be refused")
	}
	if _, _, err := read("other.pin", ""); err == nil || !strings.Contains(err.Error(), `"other.pin"`) {
		t.Errorf("no credential and no file: %v", err)
	}
	missing := filepath.Join(dir, "missing.pin")
	if _, src, err := read("other.pin", missing); err == nil || src != SourceFile || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing fallback: %q %v", src, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if s, src, err := read("hsm-a.pin", fallback); err != nil || s != "from-file" || src != SourceFile {
		t.Errorf("outside systemd: %q %q %v", s, src, err)
	}
}
