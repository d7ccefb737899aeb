package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// Secrets planted by TestNoSecretLeavesTheHost besides plantedPIN and
// plantedToken: the path and query tokens of signed desk URLs and a
// module environment password.
const (
	plantedPath   = "hookpath-5Tq8Lw2Zr"
	plantedSig    = "sigval-9Hd3Xk7Pm"
	plantedCode   = "codeval-4Nb6Jy1Fs"
	plantedEnvPwd = "envpass-8Rc2Vg5Qt"
)

// rawDesk records the raw body of every request to any path and answers
// a ticket.
type rawDesk struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newRawDesk(t *testing.T) *rawDesk {
	d := &rawDesk{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.bodies = append(d.bodies, b)
		n := len(d.bodies)
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ticket_id": "T-%d"}`, n)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *rawDesk) all() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.bodies...)
}

// setTokenPIN changes the user PIN of token i of s to pin.
func setTokenPIN(t *testing.T, s *e2eSite, i int, pin string) {
	t.Helper()
	tok := s.fleet.Tokens[i]
	cmd := exec.Command("pkcs11-tool", "--module", pkcs11test.SoftHSMLibrary, "--token-label", tok.Label,
		"--login", "--pin", "env:OLD_PIN", "--change-pin", "--new-pin", "env:NEW_PIN")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.fleet.ConfPath, "OLD_PIN="+tok.PIN, "NEW_PIN="+pin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("change the token's PIN: %v\n%s", err, out)
	}
}

// outgoing is every byte that left the agent, by where it was seen; desk
// events' bundles and bundle files are unpacked into their files.
type outgoing map[string][]byte

// add records b under name and unpacks what it carries.
func (o outgoing) add(t *testing.T, name string, b []byte) {
	t.Helper()
	o[name] = b
	if strings.HasSuffix(name, ".tar.gz") {
		for f, data := range untar(t, b) {
			o[name+"!"+f] = data
		}
		return
	}
	var ev rma.DeskEvent
	if json.Unmarshal(b, &ev) == nil && ev.Bundle != nil && ev.Bundle.ContentBase64 != "" {
		tgz, err := base64.StdEncoding.DecodeString(ev.Bundle.ContentBase64)
		if err != nil {
			t.Fatalf("%s: bundle content: %v", name, err)
		}
		o.add(t, name+"!"+ev.Bundle.Name, tgz)
	}
}

// TestNoSecretLeavesTheHost plants a device PIN, a desk signing secret,
// signed desk URLs (path token, ?sig=, ?code=) and a module environment
// password, runs a real SoftHSM2 fault through to a case delivered to a
// webhook desk, a spool desk and an unreachable desk, and greps every
// byte that leaves the agent: desk bodies with their decoded bundles,
// spool files and bundles, logs, /metrics, /api/v1/*, the status page and
// an on-demand bundle. None holds a planted secret in any encoding.
func TestNoSecretLeavesTheHost(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 1)
	setTokenPIN(t, s, 0, plantedPIN)
	pinFile, secretFile := filepath.Join(s.dir, "hsm-0.pin"), filepath.Join(s.dir, "vendor.secret")
	for f, v := range map[string]string{pinFile: plantedPIN + "\n", secretFile: plantedToken + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vendor := newRawDesk(t)
	spoolDir := filepath.Join(s.dir, "spool")
	s.write(t, siteConfig{
		Settings: "selftest_interval: 1s\n",
		Module:   fmt.Sprintf("      VENDOR_PASSWORD: %q\n", plantedEnvPwd),
		Devices:  s.device(0, "hsm-0", fmt.Sprintf("environment: development, pin_file: %q, contract: {id: C-1, tier: premium, expires: 2030-01-31, region: emea}", pinFile)),
		Desks: fmt.Sprintf("  - {name: vendor, type: webhook, role: vendor, url: %q, secret_file: %q, phones: {emea: %q}}\n"+
			"  - {name: ops, type: spool, role: internal, dir: %q}\n"+
			"  - {name: chat, type: webhook, role: internal, url: %q}\n",
			vendor.srv.URL+"/hook/"+plantedPath+"?sig="+plantedSig, secretFile, vendorPhone, spoolDir,
			"http://127.0.0.1:1/hook/"+plantedPath+"?code="+plantedCode),
	}, testTimings)
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	waitUntil(t, e2eWait, "the login_sign self-test to pass with the planted PIN", func() bool {
		for _, c := range ra.devices(t)["hsm-0"].Checks {
			if c.Name == "login_sign" && c.OK {
				return true
			}
		}
		return false
	})

	setFault(t, s, 0, pkcs11test.FaultDeviceError, "C_GenerateRandom")
	waitUntil(t, e2eWait, "the vendor event with its bundle, the spool files and a failed attempt at the unreachable desk", func() bool {
		spooled, _ := filepath.Glob(filepath.Join(spoolDir, "*.tar.gz"))
		return len(vendor.all()) > 0 && len(spooled) > 0 && strings.Contains(ra.logs.String(), "127.0.0.1:1")
	})

	out := outgoing{}
	for i, b := range vendor.all() {
		out.add(t, fmt.Sprintf("vendor request %d", i), b)
	}
	if !hasBundleFiles(out) {
		t.Fatal("the vendor desk received no bundle to check")
	}
	_ = filepath.WalkDir(spoolDir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				t.Fatal(rerr)
			}
			out.add(t, "spool "+filepath.Base(p), b)
		}
		return nil
	})
	for _, path := range []string{"/metrics", "/api/v1/devices", "/api/v1/cases?all=1", "/"} {
		_, body := ra.get(t, path)
		out[path] = []byte(body)
	}
	for f, b := range onDemandBundle(t, ra, s.serial(0)) {
		out["on-demand bundle!"+f] = b
	}
	out["agent logs"] = []byte(ra.logs.String())

	secrets := []string{plantedPIN, plantedToken, plantedPath, plantedSig, plantedCode, plantedEnvPwd}
	for name, b := range out {
		for _, secret := range secrets {
			for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), hex.EncodeToString([]byte(secret))} {
				if i := bytes.Index(b, []byte(form)); i >= 0 {
					t.Errorf("%s contains planted secret %q: ...%s...", name, form, b[max(0, i-80):min(len(b), i+len(form)+40)])
				}
			}
		}
	}
}

// hasBundleFiles reports whether out holds an unpacked bundle's config.
func hasBundleFiles(out outgoing) bool {
	for name := range out {
		if strings.HasSuffix(name, ".tar.gz!config.yml") || strings.HasSuffix(name, ".tar.gz!config.yaml") {
			return true
		}
	}
	return false
}
