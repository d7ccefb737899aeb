package agent

import (
	"strings"
	"testing"
	"unicode"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// dirtyLabel is a token label with an ANSI escape, a bidi override, a BEL
// and a C1 control; cleanLabel is what the agent must show of it.
const (
	dirtyLabel = "\x1b[31mhsm\u202eevil\x07\u0085x"
	cleanLabel = "[31mhsmevilx"
)

// nonPrintable returns the first rune of s that is neither printable nor a
// newline, or -1.
func nonPrintable(s string) rune {
	for _, r := range s {
		if r != '\n' && !unicode.IsPrint(r) {
			return r
		}
	}
	return -1
}

// TestTokenLabelControlCharacters (issue 7 item 6): a token whose label
// holds control characters and a bidi override shows a clean label in
// `check`, the metrics, the logs and the vendor ticket; so does a token
// outside the inventory.
func TestTokenLabelControlCharacters(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 2)
	s.write(t, siteConfig{Devices: s.device(0, "hsm-0", devPremium)}, testTimings) // token 1 is not in the inventory
	setFault(t, s, 0, pkcs11test.FaultLabel, dirtyLabel)
	setFault(t, s, 1, pkcs11test.FaultLabel, dirtyLabel)

	code, table, errOut := runCheck(t, s.config, false)
	if code != ExitOK || !strings.Contains(table, cleanLabel) {
		t.Errorf("check: exit %d, want the clean label %q in:\n%s\n%s", code, cleanLabel, table, errOut)
	}
	_, js, _ := runCheck(t, s.config, true)
	for name, out := range map[string]string{"check": table, "check --json": js, "check stderr": errOut} {
		if r := nonPrintable(out); r != -1 {
			t.Errorf("%s output holds %U:\n%q", name, r, out)
		}
	}
	if !strings.Contains(js, `"label": "`+cleanLabel+`"`) {
		t.Errorf("check --json: want label %q:\n%s", cleanLabel, js)
	}

	setFault(t, s, 0, pkcs11test.FaultDeviceError, "C_GenerateRandom")
	ra := startE2E(t, s)
	waitUntil(t, e2eWait, "the vendor case of hsm-0", func() bool {
		return len(eventsOf(s.desk.accepted("vendor"), rma.EventOpened)) == 1
	})
	ev := eventsOf(s.desk.accepted("vendor"), rma.EventOpened)[0].Event
	if !strings.Contains(ev.Case.Description, `label "`+cleanLabel+`"`) {
		t.Errorf("ticket description: want label %q:\n%s", cleanLabel, ev.Case.Description)
	}
	for name, text := range map[string]string{"summary": ev.Case.Summary, "description": ev.Case.Description} {
		if r := nonPrintable(text); r != -1 {
			t.Errorf("ticket %s holds %U: %q", name, r, text)
		}
	}
	metrics := ra.metrics(t)
	if !strings.Contains(metrics, `label="`+cleanLabel+`"`) {
		t.Errorf("metrics: want hsm_device_info label %q", cleanLabel)
	}
	if r := nonPrintable(metrics); r != -1 || strings.Contains(metrics, `\u001b`) || strings.Contains(metrics, `\x1b`) {
		t.Errorf("metrics hold a non-printable (%U)", r)
	}
	waitUntil(t, e2eWait, "the log line about the token outside the inventory", func() bool {
		return strings.Contains(ra.logs.String(), "token not in the inventory")
	})
	if logs := ra.logs.String(); strings.Contains(logs, `\u001b`) || nonPrintable(logs) != -1 || !strings.Contains(logs, cleanLabel) {
		t.Errorf("logs: want the clean label %q and no control characters:\n%s", cleanLabel, logs)
	}
}
