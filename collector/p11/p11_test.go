package p11

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
)

func TestDecodeFlags(t *testing.T) {
	got := DecodeFlags(pkcs11.CKF_RNG | pkcs11.CKF_LOGIN_REQUIRED | pkcs11.CKF_TOKEN_INITIALIZED |
		pkcs11.CKF_USER_PIN_LOCKED | pkcs11.CKF_SO_PIN_TO_BE_CHANGED | pkcs11.CKF_ERROR_STATE | 1<<30)
	want := []string{FlagRNG, FlagLoginRequired, FlagTokenInitialized, FlagUserPINLocked, FlagSOPINToBeChanged, FlagErrorState}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeFlags = %v, want %v", got, want)
	}
	// Every flag bit decodes to a distinct name.
	seen := map[string]bool{}
	for _, f := range tokenFlags {
		names := DecodeFlags(f.bit)
		if len(names) != 1 || seen[names[0]] {
			t.Errorf("bit 0x%x decodes to %v", f.bit, names)
		}
		seen[names[0]] = true
	}
	if (Token{Flags: []string{FlagUserPINFinalTry}}).BlocksLogin() != FlagUserPINFinalTry ||
		(Token{Flags: []string{FlagUserPINCountLow}}).BlocksLogin() != "" {
		t.Error("BlocksLogin: want final_try to block, count_low not to")
	}
}

func TestErrorName(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{pkcs11.Error(pkcs11.CKR_DEVICE_ERROR), "CKR_DEVICE_ERROR"},
		{fmt.Errorf("login: %w", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), "CKR_PIN_INCORRECT"},
		{pkcs11.Error(0x80000001), "CKR_0x80000001"},
		{fmt.Errorf("plain"), "plain"},
		{nil, ""},
	} {
		if got := ErrorName(c.err); got != c.want {
			t.Errorf("ErrorName(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	if !pinRefused(fmt.Errorf("x: %w", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT))) || pinRefused(pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)) {
		t.Error("pinRefused: want CKR_PIN_INCORRECT refused, CKR_DEVICE_ERROR not")
	}
}

// The hand-written token encoder must produce what encoding/json decodes
// back to the same token, for any bytes a token field may hold.
func TestAppendTokenRoundTrips(t *testing.T) {
	tokens := []Token{
		{},
		{SlotID: 1<<32 + 7, Serial: "a1b2", Label: `quote " back \ slash`, Model: "tab\tnl\ncr\r", Manufacturer: "<&>",
			Firmware: "2.6", Hardware: "12.50", Flags: []string{FlagRNG, FlagUserPINLocked},
			Checks: []Check{{Name: CheckTokenInfo, OK: true, Duration: 27 * time.Microsecond},
				{Name: CheckRandom, Duration: time.Second, Error: "CKR_DEVICE_ERROR"},
				{Name: CheckLoginSign, NotRun: "token reports user_pin_locked"}}},
		{Label: "ünïcødé ✓ \u2028 \x7f \x00", Serial: "bad\xff\xfeutf8"},
	}
	for _, tok := range tokens {
		var ew eventWriter
		var buf bytes.Buffer
		ew.w = bufio.NewWriter(&buf)
		ew.token(&tok)
		ew.flush()
		ev, err := parseEvent(buf.Bytes())
		if err != nil {
			t.Fatalf("parseEvent(%s): %v", buf.Bytes(), err)
		}
		want, _ := json.Marshal(tok) // encoding/json's view of the same token
		var wantTok Token
		json.Unmarshal(want, &wantTok)
		normalize(ev.Token)
		normalize(&wantTok)
		if ev.Type != EventToken || ev.Token == nil || !reflect.DeepEqual(*ev.Token, wantTok) {
			t.Errorf("round trip of %+v:\n got %+v\nwant %+v\nline %s", tok, ev.Token, wantTok, buf.Bytes())
		}
	}
}

// normalize makes nil and empty slices equal (the encoder writes [], not null).
func normalize(t *Token) {
	if t == nil {
		return
	}
	if len(t.Flags) == 0 {
		t.Flags = nil
	}
	if len(t.Checks) == 0 {
		t.Checks = nil
	}
}

// runWorker runs WorkerMain in this process and returns its events.
func runWorker(t *testing.T, args []string, stdin string) ([]WorkerEvent, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := WorkerMain(args, strings.NewReader(stdin), &out, &errb)
	var evs []WorkerEvent
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		ev, err := ParseEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs, errb.String(), code
}

func TestWorkerMainUsage(t *testing.T) {
	if _, stderr, code := runWorker(t, nil, ""); code != ExitUsage || !strings.Contains(stderr, "--library") {
		t.Errorf("no --library: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runWorker(t, WorkerArgs("/x.so", "dance"), ""); code != ExitUsage || !strings.Contains(stderr, "unknown --mode") {
		t.Errorf("bad mode: exit %d, stderr %q", code, stderr)
	}
}

// The worker runs in this test process here (the probe package tests run
// it as a child); tests that load the library do not run in parallel.
func TestWorkerProbeStreamsEachToken(t *testing.T) {
	fleet := pkcs11testtb.NewFleet(t, 2)
	t.Setenv("SOFTHSM2_CONF", fleet.ConfPath)
	skip := fleet.Tokens[1].Serial
	stdin := "{}\n" + `{"skip_serials":["` + skip + `"]}` + "\n"
	evs, stderr, code := runWorker(t, WorkerArgs(pkcs11test.SoftHSMLibrary, ModeProbe), stdin)
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	var kinds []string
	var tokens []*Token
	for _, ev := range evs {
		k := ev.Type
		if ev.Type == EventBegin {
			k += ":" + ev.Check
		}
		kinds = append(kinds, k)
		if ev.Token != nil {
			tokens = append(tokens, ev.Token)
		}
	}
	seq := strings.Join(kinds, " ")
	perToken := "begin:token_info begin:session_open begin:random token begin:session_close"
	// The spare uninitialised slot is begun but not reported.
	if !strings.HasPrefix(seq, "ready slots ") || !strings.Contains(seq, perToken) || strings.Count(seq, "done") != 2 {
		t.Errorf("event sequence %q: want ready, slots, per token %q, done per request", seq, perToken)
	}
	if len(tokens) != 3 {
		t.Fatalf("%d tokens over two requests, want 2 + 1 (the second skips %s)", len(tokens), skip)
	}
	if tokens[2].Serial == skip {
		t.Errorf("skipped serial %s reported", skip)
	}
	for _, tok := range tokens {
		if len(tok.Checks) != 3 || !tok.Checks[0].OK || !tok.Checks[1].OK || !tok.Checks[2].OK {
			t.Errorf("token %s checks %+v, want token_info, session_open, random OK", tok.Serial, tok.Checks)
		}
	}
}

func TestWorkerSelfTest(t *testing.T) {
	fleet := pkcs11testtb.NewFleet(t, 1)
	t.Setenv("SOFTHSM2_CONF", fleet.ConfPath)
	tok := fleet.Tokens[0]
	for _, c := range []struct {
		pin, wantErr string
		ok           bool
	}{
		{tok.PIN, "", true},
		{tok.PIN, "", true}, // the key exists now
		{"0000", "CKR_PIN_INCORRECT", false},
	} {
		req, _ := json.Marshal(WorkerRequest{Serial: tok.Serial, PIN: PIN(c.pin)})
		evs, stderr, code := runWorker(t, WorkerArgs(pkcs11test.SoftHSMLibrary, ModeSelfTest), string(req)+"\n")
		if code != ExitOK || len(evs) != 1 || evs[0].Result == nil {
			t.Fatalf("exit %d, events %+v; stderr %s", code, evs, stderr)
		}
		r := evs[0].Result
		if r.OK != c.ok || r.Error != c.wantErr || r.Name != CheckLoginSign {
			t.Errorf("PIN %q: result %+v, want ok=%v error %q", c.pin, r, c.ok, c.wantErr)
		}
		if strings.Contains(stderr, c.pin) {
			t.Errorf("stderr shows the PIN: %s", stderr)
		}
	}
	req, _ := json.Marshal(WorkerRequest{Serial: "no-such-serial", PIN: "1234"})
	evs, _, _ := runWorker(t, WorkerArgs(pkcs11test.SoftHSMLibrary, ModeSelfTest), string(req)+"\n")
	if len(evs) != 1 || evs[0].Result == nil || !strings.Contains(evs[0].Result.NotRun, "no token with serial") {
		t.Errorf("unknown serial: events %+v", evs)
	}
}
