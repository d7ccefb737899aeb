package probe

import (
	"bytes"
	"regexp"
)

// pinLike matches "pin=...", "PIN: ...", "so_pin=..." and the like; the
// value is replaced. Worker logs never carry a PIN, this is a second fence.
var pinLike = regexp.MustCompile(`(?i)(pin[a-z_]*["']?\s*[:=]\s*["']?)[^\s"',;}&]+`)

// scrubPINs hides anything in s that looks like a PIN assignment.
func scrubPINs(s string) string {
	return pinLike.ReplaceAllString(s, "${1}<secret>")
}

// scrubWith returns a scrubber that also hides the literal pin (when it is
// long enough not to mangle unrelated text; PKCS#11 PINs are 4+ bytes).
func scrubWith(pin []byte) func(string) string {
	if len(pin) < 4 {
		return scrubPINs
	}
	p := bytes.Clone(pin)
	return func(s string) string {
		s = string(bytes.ReplaceAll([]byte(s), p, []byte("<secret>")))
		return scrubPINs(s)
	}
}
