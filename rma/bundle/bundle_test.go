package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/internal/testutil"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// The planted secrets: a user PIN and a desk API token.
const (
	testPIN   = "48213957"
	testToken = "hsmdesk_9Fq2LxV7pR3mZ8wKc4Tb"
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

func fixedClock() time.Time { return testNow }

func testDevice() config.Device {
	return config.Device{
		Name: "hsm-prod-01", Serial: "5c1f0e2b9a7d4863", Module: "softhsm",
		Environment: config.EnvProduction, Pool: "payments",
		Contract: config.Contract{ID: "C-778", Tier: config.TierPremiumPlus, Region: config.RegionEMEA},
		PINFile:  "/etc/hsm-agent/pins/hsm-prod-01",
	}
}

// leakyInput plants the PIN and the token in the config, the logs, the
// command output, the token JSON, the history and the case, in plain,
// assignment and encoded forms.
func leakyInput(t *testing.T) Input {
	t.Helper()
	dir := t.TempDir()
	leak := filepath.Join(dir, "enquiry-output.txt")
	enquiry := strings.Join([]string{
		"nShield-style enquiry",
		"serial number: 5c1f0e2b9a7d4863",
		"firmware: 2.6",
		"login: PIN=" + testPIN,
		"export HSM_API_TOKEN=" + testToken,
		"curl -H 'Authorization: Bearer " + testToken + "' https://desk.example/api",
		"debug blob " + base64.StdEncoding.EncodeToString([]byte("user:"+testToken)),
		"pin bytes " + hex.EncodeToString([]byte(testPIN)),
		"-----BEGIN PRIVATE KEY-----",
		"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
		"-----END PRIVATE KEY-----",
	}, "\n") + "\n"
	if err := os.WriteFile(leak, []byte(enquiry), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &rma.Case{
		ID: "c-0001", DedupKey: "5c1f0e2b9a7d4863/hardware/missing", Serial: "5c1f0e2b9a7d4863",
		Device: "hsm-prod-01", Fault: "missing", Kind: rma.KindHardware, Severity: 1,
		Tier: config.TierPremiumPlus, Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen,
		Summary:     "hsm-prod-01 missing",
		Description: "token vanished; level 1 re-initialised with PIN " + testPIN,
		OpenedAt:    testNow.Add(-time.Minute),
	}
	return Input{
		Device: testDevice(),
		Case:   c,
		Events: []rma.Event{
			{CaseID: "c-0001", Seq: 1, Type: rma.EventOpened, At: testNow.Add(-time.Minute), Actor: "agent"},
			{CaseID: "c-0001", Type: rma.EventDelivery, At: testNow, Actor: "desk:vendor",
				Data: json.RawMessage(`{"status":401,"error":"token ` + testToken + ` refused"}`)},
		},
		Token: map[string]any{
			"serial": "5c1f0e2b9a7d4863", "label": "prod-01", "model": "SoftHSM v2",
			"firmware": "2.6", "hardware": "2.6",
			"flags":    []string{"user_pin_initialized", "token_initialized"},
			"user_pin": testPIN,
			"note":     "desk replied for " + testToken,
		},
		History: []map[string]any{
			{"time": testNow.Add(-30 * time.Second), "state": "failed", "reason": "login refused with " + testPIN},
			{"time": testNow, "state": "missing", "reason": "token not in slot list"},
		},
		Logs: []string{
			`{"time":"2026-03-04T05:06:00Z","level":"INFO","msg":"poll","device":"hsm-prod-01","serial":"5c1f0e2b9a7d4863"}`,
			`{"time":"2026-03-04T05:06:01Z","level":"WARN","msg":"delivering","device":"hsm-prod-01","desk_token":"` + testToken + `"}`,
			`time=2026-03-04T05:06:02Z level=WARN msg="retry" authorization="Bearer ` + testToken + `" device=hsm-prod-01`,
			`time=2026-03-04T05:06:03Z level=DEBUG msg="raw token ` + base64.RawURLEncoding.EncodeToString([]byte(testToken)) + `"`,
			`time=2026-03-04T05:06:04Z level=DEBUG msg="pin check" hex=` + strings.ToUpper(hex.EncodeToString([]byte(testPIN))) + ` plain=` + testPIN,
		},
		ConfigYAML: []byte(strings.Join([]string{
			"devices:",
			"  - name: hsm-prod-01",
			"    serial: 5c1f0e2b9a7d4863",
			"    pin_file: /etc/hsm-agent/pins/hsm-prod-01",
			"    pin: " + testPIN,
			"firmware:",
			"  minimum: \"2.6\"",
			"desks:",
			"  - name: vendor",
			"    url: https://desk.example/api?api_key=" + testToken,
			"    token: " + testToken,
			"    secret_file: <secret>",
		}, "\n") + "\n"),
		Commands: []config.DiagnosticCommand{
			{Name: "enquiry", Command: []string{"cat", leak}, Timeout: 20 * time.Second},
			{Name: "enquiry stderr", Command: []string{"sh", "-c", `cat "$0" >&2; exit 3`, leak}},
		},
		Library:      pkcs11test.SoftHSMLibrary,
		AgentVersion: "1.4.2-test",
		Host:         "site-a-hsm-agent",
		Secrets:      []config.Secret{testPIN, testToken},
	}
}

// readBundle returns every file of a tar.gz by name.
func readBundle(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.Untar(t, b)
}

// TestBuildRedactsAndVerifies builds a case bundle with secrets planted
// everywhere, then checks that its manifest verifies, that no form of either
// secret is left in any file (manifest included), that the identity data a
// vendor needs is intact, and what the manifest says.
func TestBuildRedactsAndVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := leakyInput(t)
	res, err := Build(context.Background(), dir, in, Options{Now: fixedClock, Redact: []string{`C-[0-9]{3}`}})
	if err != nil {
		t.Fatal(err)
	}
	wantPath := filepath.Join(dir, "hsm-prod-01", "20260304T050607.890Z-c-0001.tar.gz")
	if res.Path != wantPath || res.Name != filepath.Base(wantPath) {
		t.Errorf("bundle at %s, want %s", res.Path, wantPath)
	}
	raw, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); hex.EncodeToString(sum[:]) != res.SHA256 || int64(len(raw)) != res.Size {
		t.Errorf("Result SHA256/Size %s/%d do not describe the file", res.SHA256, res.Size)
	}
	m, err := Verify(res.Path)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}

	files := readBundle(t, res.Path)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"agent.log", "case.json", "commands/enquiry.txt", "commands/enquiry_stderr.txt", "config.yml",
		"device.json", "events.json", "history.json", "manifest.json", "system.txt"}
	if !slices.Equal(names, want) {
		t.Fatalf("bundle files %v, want %v", names, want)
	}

	for name, b := range files {
		for _, secret := range []string{testPIN, testToken} {
			for _, form := range encodedForms(secret) {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("%s holds %q (a form of a planted secret):\n%s", name, form, b)
				}
			}
		}
		if bytes.Contains(b, []byte("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7")) {
			t.Errorf("%s holds the private key body", name)
		}
	}

	// What a vendor needs survives.
	for name, keep := range map[string][]string{
		"device.json":          {"5c1f0e2b9a7d4863", `"firmware": "2.6"`, `"label": "prod-01"`, "/etc/hsm-agent/pins/hsm-prod-01", "user_pin_initialized", "premium-plus"},
		"config.yml":           {"serial: 5c1f0e2b9a7d4863", `minimum: "2.6"`, "pin_file: /etc/hsm-agent/pins/hsm-prod-01", "https://desk.example/api?api_key=<redacted>"},
		"commands/enquiry.txt": {"serial number: 5c1f0e2b9a7d4863", "firmware: 2.6", "result:     exit status 0", "-----BEGIN PRIVATE KEY-----\n<redacted>"},
		"case.json":            {`"serial": "5c1f0e2b9a7d4863"`, `"severity": 1`},
		"agent.log":            {`"serial":"5c1f0e2b9a7d4863"`, "Bearer <redacted>"},
		"manifest.json":        {`"serial": "5c1f0e2b9a7d4863"`, `"case_id": "c-0001"`, `"agent_version": "1.4.2-test"`, `"host": "site-a-hsm-agent"`},
		"system.txt":           {"agent_version: 1.4.2-test", "host:          site-a-hsm-agent", "kernel:", "go:            go1."},
	} {
		for _, k := range keep {
			if !bytes.Contains(files[name], []byte(k)) {
				t.Errorf("%s lost %q:\n%s", name, k, files[name])
			}
		}
	}
	// The configured pattern applied (contract ID C-778).
	if bytes.Contains(files["device.json"], []byte("C-778")) {
		t.Errorf("configured pattern C-[0-9]{3} not applied to device.json")
	}
	if !bytes.Contains(files["commands/enquiry_stderr.txt"], []byte("result:     exit status 3")) ||
		!bytes.Contains(files["commands/enquiry_stderr.txt"], []byte("--- stdout (0 bytes) ---")) {
		t.Errorf("stderr command file:\n%s", files["commands/enquiry_stderr.txt"])
	}

	// The manifest on disk is the one returned, and lists every other file.
	var onDisk Manifest
	if err := json.Unmarshal(files["manifest.json"], &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.CaseID != "c-0001" || onDisk.Device != "hsm-prod-01" || onDisk.Serial != "5c1f0e2b9a7d4863" ||
		!onDisk.CreatedAt.Equal(testNow) || onDisk.KnownSecrets != 2 || onDisk.MaxBytes != DefaultMaxBytes || m.Host != "site-a-hsm-agent" {
		t.Errorf("manifest header: %+v", onDisk)
	}
	if len(onDisk.Files) != len(files)-1 {
		t.Errorf("manifest lists %d files, the archive has %d besides the manifest", len(onDisk.Files), len(files)-1)
	}
	for _, f := range onDisk.Files {
		sum := sha256.Sum256(files[f.Name])
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(files[f.Name])) != f.Size {
			t.Errorf("manifest entry %+v does not match the file", f)
		}
	}
	redacted := map[string]map[string]int{}
	for _, r := range onDisk.Redactions {
		if !slices.Contains(onDisk.RedactionRules, r.Rule) || r.Count <= 0 {
			t.Errorf("redaction entry %+v: unknown rule or no count", r)
		}
		if redacted[r.File] == nil {
			redacted[r.File] = map[string]int{}
		}
		redacted[r.File][r.Rule] = r.Count
	}
	for file, rule := range map[string]string{
		"config.yml": RuleKnownSecret, "agent.log": RuleKnownSecret, "commands/enquiry.txt": RulePrivateKey,
		"commands/enquiry_stderr.txt": RulePrivateKey, "device.json": "redact[0]", "history.json": RuleKnownSecret,
		"case.json": RuleKnownSecret, "events.json": RuleKnownSecret,
	} {
		if redacted[file][rule] == 0 {
			t.Errorf("manifest has no %s redaction for %s: %v", rule, file, redacted[file])
		}
	}
	if len(onDisk.Truncations) != 0 {
		t.Errorf("truncations %v, want none", onDisk.Truncations)
	}
	if len(onDisk.Commands) != 2 || onDisk.Commands[0].ExitCode != 0 || onDisk.Commands[1].ExitCode != 3 || onDisk.Commands[1].File != "commands/enquiry_stderr.txt" {
		t.Errorf("commands in manifest: %+v", onDisk.Commands)
	}

	// The library is identified on disk and by its Debian package.
	lib, err := os.ReadFile(pkcs11test.SoftHSMLibrary)
	if err != nil {
		t.Fatal(err)
	}
	libSum := sha256.Sum256(lib)
	l := onDisk.Library
	if l == nil || l.SHA256 != hex.EncodeToString(libSum[:]) || l.Size != int64(len(lib)) || !strings.Contains(l.Package, "softhsm") {
		t.Errorf("library info %+v, want sha256 %x, size %d, a softhsm package", l, libSum, len(lib))
	}
	if !bytes.Contains(files["system.txt"], []byte(hex.EncodeToString(libSum[:]))) || !bytes.Contains(files["system.txt"], []byte("package:       "+l.Package)) {
		t.Errorf("system.txt lacks the library hash or package:\n%s", files["system.txt"])
	}
}

// TestBuildRedactsWithoutKnownSecrets: when the caller passes no secret
// values, the rules that need none still take the planted PIN and token out
// of their assignments, headers and key blocks.
func TestBuildRedactsWithoutKnownSecrets(t *testing.T) {
	t.Parallel()
	in := leakyInput(t)
	in.Secrets = nil
	in.Commands = in.Commands[:1]
	res, err := Build(context.Background(), t.TempDir(), in, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	files := readBundle(t, res.Path)
	for name, want := range map[string][]string{
		"config.yml":           {"    pin: <redacted>\n", "    token: <redacted>\n", "api_key=<redacted>\n"},
		"agent.log":            {`"desk_token":"<redacted>"`, `authorization="Bearer <redacted>"`},
		"device.json":          {`"user_pin": "<redacted>"`},
		"commands/enquiry.txt": {"PIN=<redacted>", "HSM_API_TOKEN=<redacted>", "Authorization: Bearer <redacted>'", "-----BEGIN PRIVATE KEY-----\n<redacted>\n-----END PRIVATE KEY-----"},
	} {
		for _, w := range want {
			if !bytes.Contains(files[name], []byte(w)) {
				t.Errorf("%s lacks %q:\n%s", name, w, files[name])
			}
		}
	}
	rules := map[string]bool{}
	for _, r := range res.Manifest.Redactions {
		rules[r.Rule] = true
		if r.Rule == RuleKnownSecret {
			t.Errorf("known-secret redaction %+v without known secrets", r)
		}
	}
	for _, r := range []string{RuleAssignment, RuleBearer, RulePrivateKey} {
		if !rules[r] {
			t.Errorf("manifest records no %s redaction: %+v", r, res.Manifest.Redactions)
		}
	}
}

// TestBuildOnDemand: no case gives a "manual" bundle without case files,
// and two bundles in the same millisecond do not overwrite each other.
func TestBuildOnDemand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := Input{Device: testDevice(), Token: map[string]string{"serial": "5c1f0e2b9a7d4863"}}
	a, err := Build(context.Background(), dir, in, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(context.Background(), dir, in, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "20260304T050607.890Z-manual.tar.gz" || b.Name != "20260304T050607.890Z-manual-2.tar.gz" {
		t.Errorf("names %q, %q", a.Name, b.Name)
	}
	files := readBundle(t, a.Path)
	if _, ok := files["case.json"]; ok {
		t.Error("on-demand bundle has case.json")
	}
	if _, ok := files["events.json"]; ok {
		t.Error("on-demand bundle has events.json")
	}
	if m, err := Verify(b.Path); err != nil || m.CaseID != "" {
		t.Errorf("Verify: %v, case id %q", err, m.CaseID)
	}
}

// rewrite copies a bundle through fn, which may change, drop (nil) or add files.
func rewrite(t *testing.T, src, dst string, fn func(files map[string][]byte)) {
	t.Helper()
	files := readBundle(t, src)
	fn(files)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		if files[n] == nil {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[n])
	}
	tw.Close()
	gz.Close()
	if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyDetectsTampering: a changed, resized, missing or added file
// fails Verify with an error naming it; an intact copy passes.
func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := Input{Device: testDevice(), Logs: []string{`{"msg":"poll","device":"hsm-prod-01"}`, `{"msg":"poll ok"}`}, History: []int{1, 2, 3}}
	res, err := Build(context.Background(), dir, in, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		fn   func(map[string][]byte)
		want []string
	}{
		{"intact", func(map[string][]byte) {}, nil},
		{"same size", func(f map[string][]byte) {
			f["agent.log"] = bytes.Replace(f["agent.log"], []byte("poll ok"), []byte("poll KO"), 1)
		},
			[]string{`file "agent.log": SHA-256`}},
		{"resized", func(f map[string][]byte) { f["history.json"] = append(f["history.json"], ' ') }, []string{`file "history.json": size`}},
		{"missing", func(f map[string][]byte) { f["system.txt"] = nil }, []string{`file "system.txt": listed in manifest.json but missing`}},
		{"extra", func(f map[string][]byte) { f["commands/extra.txt"] = []byte("x") }, []string{`file "commands/extra.txt": in the archive but not listed`}},
		{"two at once", func(f map[string][]byte) {
			f["config.yml"] = []byte("x")
			f["device.json"] = nil
		}, []string{`file "config.yml": size`, `file "device.json": listed in manifest.json but missing`}},
		{"no manifest", func(f map[string][]byte) { f["manifest.json"] = nil }, []string{"no manifest.json"}},
	}
	for _, c := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".tar.gz")
		rewrite(t, res.Path, p, c.fn)
		_, err := Verify(p)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: Verify: %v", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Verify passed a tampered bundle", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %q does not name %q and the bundle", c.name, err, w)
			}
		}
	}
	// A flipped byte in the compressed stream is caught too.
	raw, _ := os.ReadFile(res.Path)
	raw[len(raw)-6] ^= 0xff // inside the gzip trailer (CRC-32 / length)
	p := filepath.Join(dir, "flipped.tar.gz")
	os.WriteFile(p, raw, 0o600)
	if _, err := Verify(p); err == nil {
		t.Error("Verify passed a bundle with a corrupt gzip trailer")
	}
}

// processGone waits (bounded) until pid has exited: gone or a zombie.
func processGone(pid int) bool {
	for range 200 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// state is the field after the parenthesised command name
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestHangingCommandKilled: a command still running at its timeout is
// killed with the processes it started, the bundle is written and both the
// command's file and the manifest say so.
func TestHangingCommandKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sleep.pid")
	in := Input{
		Device: testDevice(),
		Commands: []config.DiagnosticCommand{
			{Name: "hang", Command: []string{"sh", "-c", `echo started; sleep 600 & echo $! > "$0"; wait; echo finished`, pidFile}, Timeout: 300 * time.Millisecond},
			{Name: "quick", Command: []string{"echo", "fine"}},
			{Name: "absent", Command: []string{"/nonexistent/vendor-tool"}},
		},
	}
	// The outer deadline only turns a broken timeout into a failure instead of a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Build(ctx, filepath.Join(dir, "bundles"), in, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	cmds := res.Manifest.Commands
	if len(cmds) != 3 {
		t.Fatalf("commands %+v", cmds)
	}
	hang := cmds[0]
	if !hang.TimedOut || hang.ExitCode != -1 || !strings.Contains(hang.Error, "killed: still running at its 300ms timeout") || hang.TimeoutMS != 300 {
		t.Errorf("hung command result %+v", hang)
	}
	if cmds[1].TimedOut || cmds[1].ExitCode != 0 || cmds[1].Error != "" {
		t.Errorf("quick command result %+v", cmds[1])
	}
	if cmds[2].ExitCode != -1 || !strings.Contains(cmds[2].Error, "could not run") {
		t.Errorf("absent command result %+v", cmds[2])
	}
	files := readBundle(t, res.Path)
	out := string(files["commands/hang.txt"])
	if !strings.Contains(out, "--- stdout (8 bytes) ---\nstarted\n") || strings.Contains(out, "\nfinished") || !strings.Contains(out, "result:     killed") {
		t.Errorf("commands/hang.txt:\n%s", out)
	}
	if !strings.Contains(string(files["commands/quick.txt"]), "fine") || !strings.Contains(string(files["commands/absent.txt"]), "could not run") {
		t.Errorf("quick/absent files:\n%s\n%s", files["commands/quick.txt"], files["commands/absent.txt"])
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Errorf("the hung command's child (pid %d) is still running", pid)
	}
}

// TestSizeCap: over the cap, the largest files are cut (the log keeps its
// newest lines, command output its beginning), small files stay whole and
// the manifest records original and kept sizes.
func TestSizeCap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs []string
	for i := range 3000 {
		logs = append(logs, fmt.Sprintf(`{"level":"INFO","msg":"poll %05d","device":"hsm-prod-01","pad":"%s"}`, i, strings.Repeat("x", 40)))
	}
	big := filepath.Join(dir, "big.txt")
	var sb strings.Builder
	for i := range 12000 {
		fmt.Fprintf(&sb, "line %05d of the vendor tool output\n", i)
	}
	os.WriteFile(big, []byte(sb.String()), 0o600)
	const limit = 64 << 10
	in := Input{
		Device:   testDevice(),
		Logs:     logs,
		Commands: []config.DiagnosticCommand{{Name: "big", Command: []string{"cat", big}}, {Name: "small", Command: []string{"echo", "ok"}}},
	}
	res, err := Build(context.Background(), filepath.Join(dir, "b"), in, Options{Now: fixedClock, MaxBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(res.Path); err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	var total int64
	sizes := map[string]int64{}
	for _, f := range m.Files {
		total += f.Size
		sizes[f.Name] = f.Size
	}
	if total > limit {
		t.Errorf("files hold %d bytes, cap %d", total, limit)
	}
	cut := map[string]Truncation{}
	for _, tr := range m.Truncations {
		cut[tr.File] = tr
	}
	if len(cut) != 2 {
		t.Fatalf("truncations %+v, want agent.log and commands/big.txt", m.Truncations)
	}
	logT, bigT := cut["agent.log"], cut["commands/big.txt"]
	if logT.KeptSize != sizes["agent.log"] || logT.OriginalSize <= logT.KeptSize || logT.OriginalSize < 3000*90 {
		t.Errorf("agent.log truncation %+v, file size %d", logT, sizes["agent.log"])
	}
	if bigT.KeptSize != sizes["commands/big.txt"] || bigT.OriginalSize < int64(sb.Len()) {
		t.Errorf("big.txt truncation %+v, file size %d, output %d", bigT, sizes["commands/big.txt"], sb.Len())
	}
	files := readBundle(t, res.Path)
	log := string(files["agent.log"])
	if !strings.Contains(log, "poll 02999") || strings.Contains(log, "poll 00000") || !strings.HasPrefix(log, "[hsm-agent: truncated") {
		t.Errorf("agent.log does not keep the newest lines behind a marker: %.200q ... %.200q", log, log[len(log)-200:])
	}
	out := string(files["commands/big.txt"])
	if !strings.HasPrefix(out, "name:       big\n") || !strings.Contains(out, "line 00000") || strings.Contains(out, "line 11999") ||
		!strings.Contains(out, "[hsm-agent: truncated") {
		t.Errorf("commands/big.txt does not keep its beginning: %.300q", out)
	}
	for _, small := range []string{"device.json", "system.txt", "commands/small.txt", "config.yml"} {
		if _, ok := cut[small]; ok {
			t.Errorf("%s was truncated", small)
		}
	}
}

// TestBuildErrors: a bad pattern, an unusable device name and a cancelled
// context fail clearly and leave nothing behind.
func TestBuildErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := Build(context.Background(), dir, Input{Device: testDevice()}, Options{Redact: []string{`serial-[0-9`}})
	if err == nil || !strings.Contains(err.Error(), `diagnostics.redact[0] "serial-[0-9"`) {
		t.Errorf("bad pattern: %v", err)
	}
	for _, name := range []string{"", "..", "a/b"} {
		d := testDevice()
		d.Name = name
		if _, err := Build(context.Background(), dir, Input{Device: d}, Options{}); err == nil || !strings.Contains(err.Error(), "devices[].name") {
			t.Errorf("device name %q: %v", name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Build(ctx, dir, Input{Device: testDevice(), Commands: []config.DiagnosticCommand{{Name: "x", Command: []string{"echo"}}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("cancelled build: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed builds left %v", entries)
	}
}

// TestPrune keeps the newest bundles per device, leaves other devices and
// other files alone and clears stale temporary files.
func TestPrune(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	other := testDevice()
	other.Name = "hsm-prod-02"
	var paths []string
	for i := range 13 {
		now := testNow.Add(time.Duration(i) * time.Hour)
		res, err := Build(context.Background(), dir, Input{Device: testDevice()}, Options{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, res.Path)
	}
	if _, err := Build(context.Background(), dir, Input{Device: other}, Options{Now: fixedClock}); err != nil {
		t.Fatal(err)
	}
	devDir := filepath.Join(dir, "hsm-prod-01")
	os.WriteFile(filepath.Join(devDir, "notes.txt"), []byte("operator notes"), 0o600)
	stale, fresh := filepath.Join(devDir, ".x.tar.gz.tmp-1"), filepath.Join(devDir, ".y.tar.gz.tmp-2")
	os.WriteFile(stale, nil, 0o600)
	os.WriteFile(fresh, nil, 0o600)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)

	if err := Prune(dir, "hsm-prod-01", 0); err != nil { // 0: the default, 10
		t.Fatal(err)
	}
	for i, p := range paths {
		_, err := os.Stat(p)
		if gone := os.IsNotExist(err); gone != (i < 3) {
			t.Errorf("bundle %d (%s): gone=%v after keeping 10", i, filepath.Base(p), gone)
		}
	}
	if err := Prune(dir, "hsm-prod-01", 2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(devDir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".y.tar.gz.tmp-2", filepath.Base(paths[11]), filepath.Base(paths[12]), "notes.txt"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if e, _ := os.ReadDir(filepath.Join(dir, "hsm-prod-02")); len(e) != 1 {
		t.Errorf("other device's bundles touched: %v", e)
	}
	if err := Prune(dir, "never-seen", 3); err != nil {
		t.Errorf("device without bundles: %v", err)
	}
	if err := Prune(dir, "../x", 3); err == nil {
		t.Error("Prune accepted a device name with a path separator")
	}
}
