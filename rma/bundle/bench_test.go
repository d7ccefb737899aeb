package bundle

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// benchLog is n JSON log lines like the agent writes, a few with secrets.
func benchLog(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"time":"2026-03-04T05:06:07.%06dZ","level":"INFO","msg":"poll","device":"hsm-prod-01","serial":"5c1f0e2b9a7d4863","state":"healthy","duration_ns":%d}`, i, 1000+i)
		if i%100 == 0 {
			lines[i] = fmt.Sprintf(`time=2026-03-04T05:06:07Z level=WARN msg="desk retry" desk_token=%s pin=%s device=hsm-prod-01`, testToken, testPIN)
		}
	}
	return lines
}

// BenchmarkRedact measures the redaction of about 16 MiB of log lines, as
// many lines and as one line (a single-line JSON document).
func BenchmarkRedact(b *testing.B) {
	lines := benchLog(100_000)
	for _, c := range []struct{ name, text string }{
		{"lines", strings.Join(lines, "\n")},
		{"one-line", "[" + strings.Join(lines, ",") + "]"},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, err := newRedactor([]string{testPIN, testToken}, []string{`C-[0-9]{3}`}, []string{"5c1f0e2b9a7d4863", "hsm-prod-01"})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.text)))
			for b.Loop() {
				r.apply([]byte(c.text))
			}
		})
	}
}

// BenchmarkBuild measures a whole case bundle: 5,000 log lines, one command,
// the SoftHSM2 library hashed and looked up with dpkg.
func BenchmarkBuild(b *testing.B) {
	dir := b.TempDir()
	in := Input{
		Device: testDevice(), Logs: benchLog(5000), Library: "/usr/lib/softhsm/libsofthsm2.so",
		Commands: []config.DiagnosticCommand{{Name: "uname", Command: []string{"uname", "-a"}}},
		Secrets:  []config.Secret{testPIN, testToken},
	}
	for b.Loop() {
		if _, err := Build(context.Background(), dir, in, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
