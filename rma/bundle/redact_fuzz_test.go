package bundle

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzRedact plants a known secret (and its base64 form) in arbitrary text
// around a secret-named assignment and runs every rule. Properties: no
// panic; a secret of at least minAnywhere bytes never survives in the
// output, plain or base64 (a secret with '<' or '>' is left out: the
// "<redacted>" marker itself could spell it); every rule count is positive.
func FuzzRedact(f *testing.F) {
	f.Add("log line pin=", "0000-1111-2222", "tail\n")
	f.Add("Authorization: Bearer ", "eyJhbGciOiJIUzI1NiJ9.abc", "\n")
	f.Add("https://user:", "hunter2hunter2", "@desk.example/x?sig=1")
	f.Add("-----BEGIN PRIVATE KEY-----\n", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "\n-----END PRIVATE KEY-----\n")
	f.Add("token: \"", "s3cr3t-t0ken-value", "\"\nserial: 5c1f0e2b9a7d4863\n")
	f.Add("", "aaaaaaaa", "aaaa")
	f.Fuzz(func(t *testing.T, before, secret, after string) {
		r, err := newRedactor([]string{secret}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b64 := base64.StdEncoding.EncodeToString([]byte(secret))
		text := before + secret + after + "\nencoded " + b64 + "\n"
		out, counts := r.apply([]byte(text))
		for rule, n := range counts {
			if n <= 0 {
				t.Errorf("rule %s counted %d", rule, n)
			}
		}
		if len(secret) < minAnywhere || strings.ContainsAny(secret, "<>") {
			return
		}
		if strings.Contains(string(out), secret) {
			t.Fatalf("secret %q survives in:\n%s", secret, out)
		}
		if strings.Contains(string(out), b64) {
			t.Fatalf("base64 of secret %q (%s) survives in:\n%s", secret, b64, out)
		}
	})
}
