package pkcs11test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// SoftHSMLibrary is the path of the SoftHSM2 PKCS#11 module on Debian and Ubuntu.
const SoftHSMLibrary = "/usr/lib/softhsm/libsofthsm2.so"

// Default PINs of every token a Fleet creates. They are throwaway test PINs.
const (
	DefaultPIN   = "1234"
	DefaultSOPIN = "5678"
)

// Token is one initialised SoftHSM2 token of a Fleet.
type Token struct {
	Label, Serial, PIN, SOPIN string
}

// Fleet is a SoftHSM2 token directory with its config file and tokens.
type Fleet struct {
	Dir      string  // fleet root; tokens live in Dir/tokens
	ConfPath string  // the softhsm2.conf to put in SOFTHSM2_CONF
	Tokens   []Token // in creation order
}

// manifestName is the file in Fleet.Dir that CachedFleet reads back. It
// holds labels and serials only, never PINs.
const manifestName = "fleet.json"

type manifest struct {
	Tokens []manifestToken `json:"tokens"`
}

type manifestToken struct {
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

// CreateFleet creates dir (if needed; it must not hold tokens yet), writes
// dir/softhsm2.conf and
// initialises n tokens labelled "<labelPrefix>-0" .. "<labelPrefix>-<n-1>"
// with PIN DefaultPIN and SO PIN DefaultSOPIN. An empty prefix means "token".
//
// One token is initialised through SoftHSM2 itself (pkcs11-tool, PINs passed
// through the environment, never argv); the others are copies of it with
// their own serial and label, which SoftHSM2 accepts as independent tokens.
// The serials are read back with softhsm2-util --show-slots and checked.
func CreateFleet(dir string, n int, labelPrefix string) (*Fleet, error) {
	if n < 0 {
		return nil, fmt.Errorf("pkcs11test: CreateFleet: n = %d, want >= 0", n)
	}
	if labelPrefix == "" {
		labelPrefix = "token"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pkcs11test: fleet dir %q: %w", dir, err)
	}
	f := &Fleet{Dir: abs, ConfPath: filepath.Join(abs, "softhsm2.conf")}
	if err := os.MkdirAll(f.tokenDir(), 0o700); err != nil {
		return nil, fmt.Errorf("pkcs11test: create token dir: %w", err)
	}
	if ents, err := os.ReadDir(f.tokenDir()); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("pkcs11test: CreateFleet: %s already holds tokens (or cannot be read: %v); use an empty dir or CachedFleet", f.tokenDir(), err)
	}
	if err := f.writeConf(); err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	for i := 0; i < n; i++ {
		tok, err := f.addToken(fmt.Sprintf("%s-%d", labelPrefix, i), seen)
		if err != nil {
			return nil, err
		}
		f.Tokens = append(f.Tokens, tok)
	}
	if err := f.verify(); err != nil {
		return nil, err
	}
	if err := f.writeManifest(); err != nil {
		return nil, err
	}
	return f, nil
}

// CachedFleet reuses the fleet in dir if it holds exactly n tokens that
// SoftHSM2 still reports; otherwise it empties dir and creates a fresh one
// with label prefix "token". Meant for benchmarks that want the same large
// fleet across runs. Tests that change tokens must not share a cached fleet.
func CachedFleet(dir string, n int) (*Fleet, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pkcs11test: fleet dir %q: %w", dir, err)
	}
	if f, err := loadFleet(abs); err == nil && len(f.Tokens) == n {
		if err := f.verify(); err == nil {
			return f, nil
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		return nil, fmt.Errorf("pkcs11test: clear stale fleet %s: %w", abs, err)
	}
	return CreateFleet(abs, n, "token")
}

func loadFleet(dir string) (*Fleet, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	f := &Fleet{Dir: dir, ConfPath: filepath.Join(dir, "softhsm2.conf")}
	if _, err := os.Stat(f.ConfPath); err != nil {
		return nil, err
	}
	for _, t := range m.Tokens {
		f.Tokens = append(f.Tokens, Token{Label: t.Label, Serial: t.Serial, PIN: DefaultPIN, SOPIN: DefaultSOPIN})
	}
	return f, nil
}

// Env returns the environment a process needs to see this fleet.
func (f *Fleet) Env() map[string]string {
	return map[string]string{"SOFTHSM2_CONF": f.ConfPath}
}

// Serials returns the serials of f.Tokens, in order.
func (f *Fleet) Serials() []string {
	s := make([]string, len(f.Tokens))
	for i, t := range f.Tokens {
		s[i] = t.Serial
	}
	return s
}

// AddToken initialises one more token with the given label (at most 32
// bytes) and the default PINs, appends it to f.Tokens and returns it.
// Processes that already called C_Initialize see it only after a fresh one.
// A Fleet is not safe for concurrent AddToken/DeleteToken calls.
func (f *Fleet) AddToken(label string) (Token, error) {
	seen := make(map[string]bool)
	for _, t := range f.Tokens {
		seen[t.Serial] = true
	}
	tok, err := f.addToken(label, seen)
	if err != nil {
		return Token{}, err
	}
	f.Tokens = append(f.Tokens, tok)
	if err := f.writeManifest(); err != nil {
		return Token{}, err
	}
	return tok, nil
}

// DeleteToken deletes the token with this serial through
// softhsm2-util --delete-token and removes it from f.Tokens.
func (f *Fleet) DeleteToken(serial string) error {
	idx := -1
	for i, t := range f.Tokens {
		if t.Serial == serial {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("pkcs11test: DeleteToken: no token with serial %q in fleet %s", serial, f.Dir)
	}
	if out, err := f.run("softhsm2-util", nil, "--delete-token", "--serial", serial); err != nil {
		return fmt.Errorf("pkcs11test: softhsm2-util --delete-token --serial %s: %w: %s", serial, err, out)
	}
	f.Tokens = append(f.Tokens[:idx:idx], f.Tokens[idx+1:]...)
	return f.writeManifest()
}

func (f *Fleet) tokenDir() string { return filepath.Join(f.Dir, "tokens") }

// writeConf writes the SoftHSM2 config of the fleet to f.ConfPath.
func (f *Fleet) writeConf() error {
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", f.tokenDir())
	if err := os.WriteFile(f.ConfPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("pkcs11test: write SoftHSM2 config: %w", err)
	}
	return nil
}

// addToken writes a copy of the template token with a fresh serial and the
// label into the token directory. SoftHSM2 names a token directory after a
// UUID and derives the serial from its last 16 hex digits; we do the same.
func (f *Fleet) addToken(label string, seen map[string]bool) (Token, error) {
	if len(label) > 32 {
		return Token{}, fmt.Errorf("pkcs11test: token label %q is %d bytes, PKCS#11 allows at most 32", label, len(label))
	}
	tmpl, err := templateToken()
	if err != nil {
		return Token{}, err
	}
	var id [16]byte
	var serial string
	for {
		if _, err := rand.Read(id[:]); err != nil {
			return Token{}, fmt.Errorf("pkcs11test: random token id: %w", err)
		}
		serial = hex.EncodeToString(id[8:])
		if !seen[serial] {
			break
		}
	}
	seen[serial] = true
	obj := bytes.Clone(tmpl.object)
	if err := setAttr(obj, attrTokenSerial, []byte(serial)); err != nil {
		return Token{}, err
	}
	padded := []byte(label + strings.Repeat(" ", 32-len(label)))
	if err := setAttr(obj, attrTokenLabel, padded); err != nil {
		return Token{}, err
	}
	h := hex.EncodeToString(id[:])
	uuid := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	d := filepath.Join(f.tokenDir(), uuid)
	if err := os.Mkdir(d, 0o700); err != nil {
		return Token{}, fmt.Errorf("pkcs11test: create token: %w", err)
	}
	files := map[string][]byte{"token.object": obj, "token.lock": nil, "generation": tmpl.generation}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
			return Token{}, fmt.Errorf("pkcs11test: create token: %w", err)
		}
	}
	return Token{Label: label, Serial: serial, PIN: DefaultPIN, SOPIN: DefaultSOPIN}, nil
}

// SoftHSM2 vendor attributes of token.object (src/lib/object_store/OSAttributes.h).
const (
	attrTokenLabel  = 0x80005349 // CKA_OS_TOKENLABEL
	attrTokenSerial = 0x8000534a // CKA_OS_TOKENSERIAL
)

// setAttr overwrites the value of a byte-string attribute in a SoftHSM2
// object file in place. The file stores each attribute as big-endian 64-bit
// type, kind (3 = byte string), length, then the value; the new value must
// have the old length.
func setAttr(obj []byte, attr uint64, val []byte) error {
	var pat [24]byte
	binary.BigEndian.PutUint64(pat[0:], attr)
	binary.BigEndian.PutUint64(pat[8:], 3)
	binary.BigEndian.PutUint64(pat[16:], uint64(len(val)))
	i := bytes.Index(obj, pat[:])
	if i < 0 || i+24+len(val) > len(obj) {
		return fmt.Errorf("pkcs11test: SoftHSM2 token.object has no %d-byte attribute 0x%x; this SoftHSM2 version stores tokens differently", len(val), attr)
	}
	copy(obj[i+24:], val)
	return nil
}

// tokenTemplate is the files of a token freshly initialised by SoftHSM2
// with the default PINs.
type tokenTemplate struct {
	object     []byte // token.object
	generation []byte // generation: SoftHSM2's change counter of the token
}

var (
	templateMu    sync.Mutex
	templateCache *tokenTemplate
)

// templateToken returns the template token, made once per process.
func templateToken() (*tokenTemplate, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if templateCache == nil {
		t, err := makeTemplate()
		if err != nil {
			return nil, err
		}
		templateCache = t
	}
	return templateCache, nil
}

func makeTemplate() (*tokenTemplate, error) {
	dir, err := os.MkdirTemp("", "pkcs11test-template-")
	if err != nil {
		return nil, fmt.Errorf("pkcs11test: template dir: %w", err)
	}
	defer os.RemoveAll(dir)
	tf := &Fleet{Dir: dir, ConfPath: filepath.Join(dir, "softhsm2.conf")}
	if err := os.Mkdir(tf.tokenDir(), 0o700); err != nil {
		return nil, fmt.Errorf("pkcs11test: template dir: %w", err)
	}
	if err := tf.writeConf(); err != nil {
		return nil, err
	}
	pins := []string{"PKCS11TEST_SO_PIN=" + DefaultSOPIN, "PKCS11TEST_PIN=" + DefaultPIN}
	if out, err := tf.run("pkcs11-tool", pins, "--module", SoftHSMLibrary, "--slot-index", "0",
		"--init-token", "--label", "template", "--so-pin", "env:PKCS11TEST_SO_PIN"); err != nil {
		return nil, fmt.Errorf("pkcs11test: pkcs11-tool --init-token (is opensc installed?): %w: %s", err, out)
	}
	if out, err := tf.run("pkcs11-tool", pins, "--module", SoftHSMLibrary, "--token-label", "template",
		"--login", "--login-type", "so", "--so-pin", "env:PKCS11TEST_SO_PIN",
		"--init-pin", "--pin", "env:PKCS11TEST_PIN"); err != nil {
		return nil, fmt.Errorf("pkcs11test: pkcs11-tool --init-pin: %w: %s", err, out)
	}
	objs, err := filepath.Glob(filepath.Join(tf.tokenDir(), "*", "token.object"))
	if err != nil || len(objs) != 1 {
		return nil, fmt.Errorf("pkcs11test: template token: want 1 token.object in %s, found %d", tf.tokenDir(), len(objs))
	}
	var t tokenTemplate
	if t.object, err = os.ReadFile(objs[0]); err != nil {
		return nil, fmt.Errorf("pkcs11test: template token: %w", err)
	}
	if t.generation, err = os.ReadFile(filepath.Join(filepath.Dir(objs[0]), "generation")); err != nil {
		return nil, fmt.Errorf("pkcs11test: template token: %w", err)
	}
	return &t, nil
}

// run runs a SoftHSM2 tool with SOFTHSM2_CONF set to this fleet.
func (f *Fleet) run(name string, extraEnv []string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(os.Environ(), "SOFTHSM2_CONF="+f.ConfPath), extraEnv...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ShowSlots returns serial -> label of every initialised token as
// softhsm2-util --show-slots reports them.
func (f *Fleet) ShowSlots() (map[string]string, error) {
	out, err := f.run("softhsm2-util", nil, "--show-slots")
	if err != nil {
		return nil, fmt.Errorf("pkcs11test: softhsm2-util --show-slots: %w: %s", err, out)
	}
	res := make(map[string]string)
	serial := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		switch k {
		case "Serial number":
			serial = strings.TrimSpace(v)
		case "Label":
			if serial != "" {
				res[serial] = strings.TrimSpace(v)
			}
			serial = ""
		}
	}
	return res, nil
}

// verify checks that SoftHSM2 reports exactly the fleet's serials and labels.
func (f *Fleet) verify() error {
	got, err := f.ShowSlots()
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range f.Tokens {
		l, ok := got[t.Serial]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("token %s (%s) not reported", t.Serial, t.Label))
		case l != t.Label:
			errs = append(errs, fmt.Errorf("token %s: label %q, want %q", t.Serial, l, t.Label))
		}
	}
	if len(got) != len(f.Tokens) {
		errs = append(errs, fmt.Errorf("SoftHSM2 reports %d tokens, fleet has %d", len(got), len(f.Tokens)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pkcs11test: fleet %s does not match softhsm2-util --show-slots: %w", f.Dir, err)
	}
	return nil
}

func (f *Fleet) writeManifest() error {
	var m manifest
	for _, t := range f.Tokens {
		m.Tokens = append(m.Tokens, manifestToken{Label: t.Label, Serial: t.Serial})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.Dir, manifestName), b, 0o600); err != nil {
		return fmt.Errorf("pkcs11test: write fleet manifest: %w", err)
	}
	return nil
}
