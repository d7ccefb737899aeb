package bundle

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

func mustRedactor(t *testing.T, secrets, patterns, protect []string) *redactor {
	t.Helper()
	r, err := newRedactor(secrets, patterns, protect)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRedactForms lists every form of secret assignment the default rules
// catch, and the look-alikes they must leave alone.
func TestRedactForms(t *testing.T) {
	t.Parallel()
	r := mustRedactor(t, nil, nil, nil)
	pem := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB4mMvW0\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----"
	cases := []struct {
		name, in, want, rule string
	}{
		{"yaml", "pin: 1234\n", "pin: <redacted>\n", RuleAssignment},
		{"yaml quoted", `  password: "hunter2 two"`, `  password: "<redacted>"`, RuleAssignment},
		{"yaml single quoted", `passwd: 'it''s'`, `passwd: '<redacted>'`, RuleAssignment},
		{"yaml rest of line", "user_pin: correct horse battery  # from file\nnext: 1", "user_pin: <redacted>  # from file\nnext: 1", RuleAssignment},
		{"yaml list item key", "- secret: abc def\n", "- secret: <redacted>\n", RuleAssignment},
		{"yaml block scalar", "client_secret: |\n  line one\n  line two\nnext: 1\n", "client_secret: |\n  <redacted>\nnext: 1\n", RuleAssignment},
		{"yaml list", "token:\n  - abc\n  - def\nother: x\n", "token:\n  - <redacted>\n  - <redacted>\nother: x\n", RuleAssignment},
		{"json", `{"pin":"1234","serial":"abc"}`, `{"pin":"<redacted>","serial":"abc"}`, RuleAssignment},
		{"json escaped quote", `{"password":"a\"b c","x":1}`, `{"password":"<redacted>","x":1}`, RuleAssignment},
		{"json number", "{\n  \"so_pin\": 56781234,\n  \"x\": 1\n}", "{\n  \"so_pin\": <redacted>,\n  \"x\": 1\n}", RuleAssignment},
		{"assignment inside a string", `{"msg":"pin: 1234 ok"}`, `{"msg":"pin: <redacted> ok"}`, RuleAssignment},
		{"line rules on later lines", "a\nb --pin 99 x\nc\nGET https://u:pw@h/ Bearer abcdefghij\nd", "a\nb --pin <redacted> x\nc\nGET https://u:<redacted>@h/ Bearer <redacted>\nd", ""},
		{"json camel case", `{"apiKey":"k1","accessToken":"t1"}`, `{"apiKey":"<redacted>","accessToken":"<redacted>"}`, RuleAssignment},
		{"env", "HSM_PIN=1234\n", "HSM_PIN=<redacted>\n", RuleAssignment},
		{"env export quoted", `export DESK_TOKEN="abc def"`, `export DESK_TOKEN="<redacted>"`, RuleAssignment},
		{"logfmt", `level=INFO msg="login" so_pin=5678 device=hsm-01`, `level=INFO msg="login" so_pin=<redacted> device=hsm-01`, RuleAssignment},
		{"logfmt inside message", `msg="retry with token=abc123 failed" device=hsm-01`, `msg="retry with token=<redacted> failed" device=hsm-01`, RuleAssignment},
		{"header api key", "X-Api-Key: k-123\n", "X-Api-Key: <redacted>\n", RuleAssignment},
		{"header basic", "Authorization: Basic dXNlcjpwYXNz\n", "Authorization: Basic <redacted>\n", RuleAssignment},
		{"header lower-case scheme", "authorization: token abc\n", "authorization: token <redacted>\n", RuleAssignment},
		{"inline authorization", `req authorization=Basic dXNlcjpwYXNz sent`, `req authorization=Basic <redacted> sent`, RuleAssignment},
		{"bearer", "Authorization: Bearer abcdefgh12345\n", "Authorization: Bearer <redacted>\n", RuleBearer},
		{"go header map", "map[Authorization:[Bearer abcdefghijk] X-Api-Key:[k-123]]", "map[Authorization:[Bearer <redacted>] X-Api-Key:[<redacted>]]", ""},
		{"url password", "GET https://alice:s3cr3t@desk.example/api", "GET https://alice:<redacted>@desk.example/api", RuleURLCredentials},
		{"url query", "https://desk/api?api_key=abc123&x=1", "https://desk/api?api_key=<redacted>&x=1", RuleAssignment},
		{"cli flags", "pkcs11-tool --login --pin 1234 --so-pin 5678 --token-label hsm", "pkcs11-tool --login --pin <redacted> --so-pin <redacted> --token-label hsm", RuleFlag},
		{"cli flag =", "tool --password=xyz --verbose", "tool --password=<redacted> --verbose", RuleAssignment},
		{"pem", "key:\n" + pem + "\nafter", "key:\n-----BEGIN EC PRIVATE KEY-----\n<redacted>\n-----END EC PRIVATE KEY-----\nafter", RulePrivateKey},
		{"pem cut", "-----BEGIN PRIVATE KEY-----\nMIIEvQ", "-----BEGIN PRIVATE KEY-----\n<redacted>\n-----END PRIVATE KEY-----", RulePrivateKey},
		{"pem in json", `{"k":"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"}`, `{"k":"-----BEGIN RSA PRIVATE KEY-----` + "\n<redacted>\n" + `-----END RSA PRIVATE KEY-----"}`, RulePrivateKey},
	}
	kept := []string{
		"serial: 0123456789abcdef\nfirmware: 2.6\nhardware: \"2.6\"\n",
		"pin_file: /etc/hsm-agent/pins/hsm-01\nsecret_file: /etc/hsm-agent/desk.key\ntoken_file: /x\n",
		`{"token_label":"hsm-01","flags":["user_pin_locked","token_initialized"],"user_pin_count_low":true}`,
		"tokens: 3\nspin: 4\npassword: <secret>\ntoken: null\n",
		`{"token": {"label": "hsm-01", "serial": "0123"}}`,
		"level=WARN msg=\"token reports user_pin_locked; never logging in (a wrong PIN could lock it)\" device=hsm-01",
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"the token uses bearer auth",
		"2026-01-02T03:04:05Z model: SoftHSM v2 time=12:34:56",
	}
	for _, c := range cases {
		got, counts := r.apply([]byte(c.in))
		if string(got) != c.want {
			t.Errorf("%s:\n in: %q\ngot: %q\nwant %q", c.name, c.in, got, c.want)
		}
		if c.rule != "" && counts[c.rule] == 0 {
			t.Errorf("%s: no replacement counted for rule %s: %v", c.name, c.rule, counts)
		}
	}
	for _, in := range kept {
		if got, counts := r.apply([]byte(in)); string(got) != in {
			t.Errorf("over-redacted:\n in: %q\ngot: %q (%v)", in, got, counts)
		}
	}
}

// TestRedactKnownSecrets checks the known values in plain and encoded
// forms, and that a short PIN leaves serials, hashes and other numbers alone.
func TestRedactKnownSecrets(t *testing.T) {
	t.Parallel()
	const pin = "1234"
	const token = "tok_9Fq2LxV7pR3mZ8wK"
	const quoted = `pa"ss\word`
	r := mustRedactor(t, []string{pin, token, quoted}, nil, []string{"SN-1234-77"})
	in := strings.Join([]string{
		"serial SN-1234-77 firmware 12.34 pin was 1234, not 91234 or 1234x",
		"prefix" + token + "suffix",
		"std " + base64.StdEncoding.EncodeToString([]byte(token)),
		"url " + base64.URLEncoding.EncodeToString([]byte(token)),
		"raw " + base64.RawStdEncoding.EncodeToString([]byte(token)),
		"basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+token)),
		"offset1 " + base64.StdEncoding.EncodeToString([]byte("x"+token+"yz")),
		"offset2 " + base64.StdEncoding.EncodeToString([]byte("xy"+token)),
		"hex " + hex.EncodeToString([]byte(token)) + " HEX " + strings.ToUpper(hex.EncodeToString([]byte(pin))),
		"pin64 " + base64.StdEncoding.EncodeToString([]byte(pin)) + " pinhex " + hex.EncodeToString([]byte(pin)),
		`json {"note":"pa\"ss\\word"}`,
	}, "\n")
	got, counts := r.apply([]byte(in))
	out := string(got)
	for _, form := range encodedForms(token) {
		if strings.Contains(out, form) {
			t.Errorf("token form %q survived:\n%s", form, out)
		}
	}
	for _, form := range []string{"pin was 1234", base64.StdEncoding.EncodeToString([]byte(pin)), hex.EncodeToString([]byte(pin)), "3132333"} {
		if strings.Contains(out, form) {
			t.Errorf("pin form %q survived:\n%s", form, out)
		}
	}
	if strings.Contains(out, `pa\"ss`) {
		t.Errorf("JSON-escaped secret survived:\n%s", out)
	}
	for _, keep := range []string{"serial SN-1234-77 firmware 12.34", "91234", "1234x"} {
		if !strings.Contains(out, keep) {
			t.Errorf("%q was redacted, it is no secret:\n%s", keep, out)
		}
	}
	if counts[RuleKnownSecret] < 10 {
		t.Errorf("known-secret count %d, want at least 10: %v", counts[RuleKnownSecret], counts)
	}
}

// TestRedactConfiguredPatterns: whole matches, capture groups only, the
// serial protected, and a bad pattern named in the error.
func TestRedactConfiguredPatterns(t *testing.T) {
	t.Parallel()
	r := mustRedactor(t, nil, []string{`ACME-[0-9]{6}`, `account=(\d+)`, `[0-9a-f]{16}`}, []string{"5c1f0e2b9a7d4863"})
	got, counts := r.apply([]byte("ref ACME-123456 account=42 serial 5c1f0e2b9a7d4863 id 00112233445566778899"))
	want := "ref <redacted> account=<redacted> serial 5c1f0e2b9a7d4863 id <redacted>8899"
	if string(got) != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if counts["redact[0]"] != 1 || counts["redact[1]"] != 1 || counts["redact[2]"] != 1 {
		t.Errorf("counts %v, want one per pattern", counts)
	}
	_, err := newRedactor(nil, []string{`ok`, `acct=([0-9]+`}, nil)
	if err == nil || !strings.Contains(err.Error(), "diagnostics.redact[1]") || !strings.Contains(err.Error(), `"acct=([0-9]+"`) {
		t.Errorf("bad pattern: error %v, want one naming diagnostics.redact[1] and the pattern", err)
	}
}

// encodedForms lists how a secret may appear encoded: base64 (standard and
// URL, padded and raw), hex, and the middle of its base64 inside a longer
// base64 string at each alignment.
func encodedForms(secret string) []string {
	b := []byte(secret)
	forms := []string{
		secret,
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
	}
	for k := range 3 {
		for _, e := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			enc := e.EncodeToString(append(make([]byte, k), b...))
			// Characters 0..ceil(8k/6)-1 carry the prefix's bits, the last
			// partial one the suffix's.
			start, end := (8*k+5)/6, (8*(k+len(b)))/6
			if end-start >= 8 {
				forms = append(forms, enc[start:end])
			}
		}
	}
	return forms
}
