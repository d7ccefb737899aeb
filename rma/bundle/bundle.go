// Package bundle builds the diagnostics bundle a support case carries
// (support-model.md sections 5 and 6): a tar.gz holding manifest.json (every
// file with its size and SHA-256, the agent version, the host, what was
// redacted and what was truncated), the device's inventory entry and token
// state, its recent probe history, the case and its events, the agent's
// recent log lines for the device, the effective config, OS and library
// versions and the output of the operator's diagnostic commands.
//
// Every file is redacted before it is written: known secret values (and
// their base64/hex/escaped forms), secret-named assignments, bearer tokens,
// URL passwords, PEM private keys and the configured patterns. Verify checks
// a bundle against its manifest; Prune keeps the newest bundles per device.
// LogBuffer is the slog handler that keeps each device's recent log lines.
package bundle

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
)

// Defaults for the settings Options and Prune leave at zero.
const (
	// DefaultMaxBytes caps a bundle's uncompressed content (diagnostics.max_bundle_bytes).
	DefaultMaxBytes int64 = 20 << 20
	// DefaultRetention is how many bundles Prune keeps per device (diagnostics.retention).
	DefaultRetention = 10
	// DefaultCommandTimeout bounds a diagnostic command without its own timeout.
	DefaultCommandTimeout = 30 * time.Second
)

// ManifestName is the manifest's name inside a bundle; ManifestFormat its version.
const (
	ManifestName   = "manifest.json"
	ManifestFormat = 1
)

// Input is what one bundle holds. Everything is redacted on its way in.
type Input struct {
	// Device is the device's inventory entry; its name names the bundle directory.
	Device config.Device
	// Case is the case the bundle is for; nil for an on-demand bundle.
	Case *rma.Case
	// Events is the case's event log (written when Case is set or Events is not empty).
	Events []rma.Event
	// Token is the device's token info and status, written as JSON.
	Token any
	// History is the device's recent probe history, written as JSON.
	History any
	// Logs are the agent's recent log lines for the device (LogBuffer.Lines).
	Logs []string
	// ConfigYAML is the effective config, rendered with secrets as <secret>.
	ConfigYAML []byte
	// Commands are run now (concurrently), each under its timeout
	// (DefaultCommandTimeout when zero); their output goes into commands/NAME.txt.
	Commands []config.DiagnosticCommand
	// Library is the PKCS#11 library path of the device's module.
	Library string
	// AgentVersion is the agent's version string.
	AgentVersion string
	// Host is the host name ("" = os.Hostname()).
	Host string
	// Secrets are the secret values known to the agent (PINs, desk tokens,
	// signing secrets); they are scrubbed wherever they appear, in plain and
	// encoded forms.
	Secrets []config.Secret
}

// Options tune one Build.
type Options struct {
	// MaxBytes caps the total uncompressed size of the bundle's files
	// (manifest.json not counted); DefaultMaxBytes when zero. When the files
	// are larger, the largest are cut down to a common size (agent.log keeps
	// its newest lines, other files their beginning) and the manifest lists
	// each cut with its original and kept size.
	MaxBytes int64
	// Redact are extra regular expressions (diagnostics.redact). A match is
	// replaced by <redacted>; when a pattern has capture groups only what the
	// groups matched is replaced.
	Redact []string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Result describes a bundle written by Build.
type Result struct {
	// Path is the bundle's full path, Name its file name.
	Path string
	Name string
	// SHA256 (hex) and Size are those of the tar.gz file.
	SHA256   string
	Size     int64
	Manifest Manifest
}

// Manifest is manifest.json: what the bundle holds and what was done to it.
type Manifest struct {
	Format       int       `json:"format"`
	AgentVersion string    `json:"agent_version"`
	Host         string    `json:"host"`
	OS           string    `json:"os"`
	Kernel       string    `json:"kernel"`
	CreatedAt    time.Time `json:"created_at"`
	CaseID       string    `json:"case_id,omitempty"`
	Device       string    `json:"device"`
	Serial       string    `json:"serial"`
	// Files lists every file of the bundle except manifest.json.
	Files []File `json:"files"`
	// RedactionRules are the rules every file went through, in order.
	RedactionRules []string `json:"redaction_rules"`
	// KnownSecrets is how many secret values were scrubbed for (never the values).
	KnownSecrets int `json:"known_secrets"`
	// Redactions says, per file and rule, how many values were replaced.
	Redactions []Redaction `json:"redactions"`
	// MaxBytes is the size cap that applied; Truncations the files it cut.
	MaxBytes    int64           `json:"max_bytes"`
	Truncations []Truncation    `json:"truncations"`
	Commands    []CommandResult `json:"commands,omitempty"`
	Library     *LibraryInfo    `json:"library,omitempty"`
}

// File is one file of a bundle.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Redaction counts the values one rule replaced in one file.
type Redaction struct {
	File  string `json:"file"`
	Rule  string `json:"rule"`
	Count int    `json:"count"`
}

// Truncation records a file cut to fit the size cap (or command output
// beyond what was kept while capturing).
type Truncation struct {
	File         string `json:"file"`
	OriginalSize int64  `json:"original_size"`
	KeptSize     int64  `json:"kept_size"`
}

// CommandResult is how one diagnostic command ended.
type CommandResult struct {
	Name string `json:"name"`
	File string `json:"file"`
	// ExitCode is the exit status; -1 when the command did not exit by itself.
	ExitCode   int   `json:"exit_code"`
	TimedOut   bool  `json:"timed_out,omitempty"`
	TimeoutMS  int64 `json:"timeout_ms"`
	DurationMS int64 `json:"duration_ms"`
	// Error says why the command failed to run or was stopped.
	Error string `json:"error,omitempty"`
}

// LibraryInfo identifies the PKCS#11 library on disk.
type LibraryInfo struct {
	Path     string    `json:"path"`
	Resolved string    `json:"resolved,omitempty"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime,omitzero"`
	SHA256   string    `json:"sha256,omitempty"`
	// Package is the Debian package that owns the file (dpkg -S), with its version.
	Package string `json:"package,omitempty"`
	Error   string `json:"error,omitempty"`
}

// content is one file on its way into the bundle.
type content struct {
	name string
	data []byte
	// tail keeps the end of the file when it is cut (newest log lines).
	tail bool
	// dropped counts bytes never captured (command output past the cap).
	dropped int64
}

// Build collects, redacts and writes a bundle to
// <dir>/<device>/<UTC timestamp>-<case id or "manual">.tar.gz, atomically
// (temporary file, fsync, rename, fsync of the directory). Failing
// diagnostic commands are recorded in the bundle, not returned as errors;
// a cancelled ctx stops the build and writes nothing.
func Build(ctx context.Context, dir string, in Input, opts Options) (Result, error) {
	devDir, err := deviceDir(dir, in.Device.Name)
	if err != nil {
		return Result{}, err
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	created := now().UTC()

	files, protect, err := collect(in)
	if err != nil {
		return Result{}, err
	}
	secrets := revealAll(in.Secrets)
	red, err := newRedactor(secrets, opts.Redact, protect)
	if err != nil {
		return Result{}, fmt.Errorf("bundle for device %q: %w", in.Device.Name, err)
	}

	sys := gatherSystem(ctx, in)
	cmdFiles, cmdResults := runCommands(ctx, in.Commands, opts.MaxBytes)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("bundle for device %q: cancelled while collecting diagnostics: %w", in.Device.Name, err)
	}
	files = append(files, &content{name: "system.txt", data: sys.text(in, created)})
	files = append(files, cmdFiles...)

	m := Manifest{
		Format:         ManifestFormat,
		AgentVersion:   in.AgentVersion,
		Host:           red.scrub(sys.host),
		OS:             red.scrub(sys.os),
		Kernel:         red.scrub(sys.kernel),
		CreatedAt:      created,
		Device:         in.Device.Name,
		Serial:         in.Device.Serial,
		RedactionRules: red.ruleNames(),
		KnownSecrets:   len(secrets),
		Redactions:     []Redaction{},
		MaxBytes:       opts.MaxBytes,
		Library:        sys.lib,
	}
	if in.Case != nil {
		m.CaseID = in.Case.ID
		if m.Serial == "" {
			m.Serial = in.Case.Serial
		}
	}
	for _, f := range files {
		var counts map[string]int
		f.data, counts = red.apply(f.data)
		for _, rule := range m.RedactionRules {
			if n := counts[rule]; n > 0 {
				m.Redactions = append(m.Redactions, Redaction{File: f.name, Rule: rule, Count: n})
			}
		}
	}
	for i := range cmdResults {
		cmdResults[i].Error = red.scrub(cmdResults[i].Error)
	}
	m.Commands = cmdResults
	if m.Library != nil {
		m.Library.Error = red.scrub(m.Library.Error)
	}
	m.Truncations = truncate(files, opts.MaxBytes)
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		m.Files = append(m.Files, File{Name: f.name, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Result{}, fmt.Errorf("bundle for device %q: encoding manifest.json: %w", in.Device.Name, err)
	}
	manifest = append(manifest, '\n')

	id := "manual"
	if in.Case != nil && in.Case.ID != "" {
		id = safeName(in.Case.ID)
	}
	base := created.Format("20060102T150405.000") + "Z-" + id
	path, sum, size, err := writeAtomic(devDir, base, created, manifest, files)
	if err != nil {
		return Result{}, fmt.Errorf("bundle for device %q: %w", in.Device.Name, err)
	}
	return Result{Path: path, Name: filepath.Base(path), SHA256: sum, Size: size, Manifest: m}, nil
}

// collect renders the Input's own files and the values the redaction must
// leave alone (serial numbers, firmware and hardware versions, labels).
func collect(in Input) ([]*content, []string, error) {
	var files []*content
	add := func(name string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("bundle for device %q: encoding %s: %w", in.Device.Name, name, err)
		}
		files = append(files, &content{name: name, data: append(b, '\n')})
		return nil
	}
	device := struct {
		Inventory config.Device `json:"inventory"`
		Token     any           `json:"token"`
	}{in.Device, in.Token}
	if err := add("device.json", device); err != nil {
		return nil, nil, err
	}
	if in.Case != nil {
		if err := add("case.json", in.Case); err != nil {
			return nil, nil, err
		}
	}
	if in.Case != nil || len(in.Events) > 0 {
		events := in.Events
		if events == nil {
			events = []rma.Event{}
		}
		if err := add("events.json", events); err != nil {
			return nil, nil, err
		}
	}
	if err := add("history.json", in.History); err != nil {
		return nil, nil, err
	}
	var log []byte
	for _, l := range in.Logs {
		log = append(log, strings.TrimRight(l, "\n")...)
		log = append(log, '\n')
	}
	files = append(files, &content{name: "agent.log", data: log, tail: true})
	files = append(files, &content{name: "config.yml", data: slices.Clone(in.ConfigYAML)})

	protect := []string{in.Device.Serial, in.Device.Name}
	if in.Case != nil {
		protect = append(protect, in.Case.Serial, in.Case.Device, in.Case.ID)
	}
	for _, f := range files {
		if f.name == "device.json" || f.name == "history.json" {
			var v any
			if json.Unmarshal(f.data, &v) == nil {
				protect = identityValues(v, protect)
			}
		}
	}
	return files, protect, nil
}

// identityKeys name the JSON fields whose string values identify a device
// and are never redacted by the known-secret or configured rules.
var identityKeys = map[string]bool{"serial": true, "firmware": true, "hardware": true, "model": true, "label": true, "manufacturer": true}

// maxProtected bounds the identity values collected from a long history.
const maxProtected = 256

func identityValues(v any, out []string) []string {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && identityKeys[strings.ToLower(k)] {
				s = strings.TrimSpace(s)
				if s != "" && len(out) < maxProtected && !slices.Contains(out, s) {
					out = append(out, s)
				}
				continue
			}
			out = identityValues(x, out)
		}
	case []any:
		for _, x := range t {
			out = identityValues(x, out)
		}
	}
	return out
}

// deviceDir returns the directory of a device's bundles.
func deviceDir(dir, device string) (string, error) {
	if device == "" {
		return "", errors.New("bundle: the device has no name; bundles are kept per device, set devices[].name in the inventory")
	}
	if device == "." || device == ".." || strings.ContainsAny(device, "/\\\x00") {
		return "", fmt.Errorf("bundle: device name %q cannot name a directory; rename the device (devices[].name) without '/', '\\' or a leading '..'", device)
	}
	return filepath.Join(dir, device), nil
}

// safeName keeps letters, digits, '.', '_' and '-' of s and turns the rest into '_'.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !isWordByte(c) && c != '.' && c != '_' && c != '-' {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Trim(string(b), ".")
}

// writeAtomic writes the tar.gz under a temporary name, syncs it and renames
// it to <base>.tar.gz (or <base>-N.tar.gz if that exists).
func writeAtomic(devDir, base string, created time.Time, manifest []byte, files []*content) (path, sum string, size int64, err error) {
	if err := os.MkdirAll(devDir, 0o750); err != nil {
		return "", "", 0, fmt.Errorf("creating bundle directory: %w", err)
	}
	tmp, err := os.CreateTemp(devDir, "."+base+".tmp-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("creating bundle file in %s: %w", devDir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	if err := writeTarGz(cw, created, manifest, files); err != nil {
		return "", "", 0, fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", "", 0, fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	for i := 1; ; i++ {
		name := base + ".tar.gz"
		if i > 1 {
			name = fmt.Sprintf("%s-%d.tar.gz", base, i)
		}
		path = filepath.Join(devDir, name)
		if _, statErr := os.Lstat(path); errors.Is(statErr, fs.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", "", 0, fmt.Errorf("renaming bundle into place: %w", err)
	}
	if d, derr := os.Open(devDir); derr == nil {
		d.Sync()
		d.Close()
	}
	return path, hex.EncodeToString(h.Sum(nil)), cw.n, nil
}

func writeTarGz(w io.Writer, created time.Time, manifest []byte, files []*content) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	gz.ModTime = created
	tw := tar.NewWriter(gz)
	write := func(name string, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o600, ModTime: created.Truncate(time.Second)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write(ManifestName, manifest); err != nil {
		return err
	}
	for _, f := range files {
		if err := write(f.name, f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hashReader streams r into a SHA-256 and returns its hex sum and size.
func hashReader(r io.Reader) (string, int64, error) {
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
