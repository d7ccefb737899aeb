package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/hsm-agent/hsm-agent/agent"
)

// printDiscovered prints the tokens not in the inventory as devices:
// entries ready to paste into the configuration file. The name comes from
// the token label (made a valid, unique name); environment defaults to
// production, which the operator should check since it sets severities.
func printDiscovered(w io.Writer, configFile string, unexpected []agent.UnexpectedReport) {
	if len(unexpected) == 0 {
		return
	}
	fmt.Fprintf(w, "\n# %d token(s) not in the inventory. To watch them, add these entries under devices: in %s\n", len(unexpected), configFile)
	fmt.Fprintln(w, "# (check each name and environment: production, non-production or development; it sets case severity).")
	fmt.Fprintln(w, "devices:")
	used := map[string]bool{}
	for _, u := range unexpected {
		name := deviceName(u.Label, u.Serial)
		for i := 2; used[name]; i++ {
			name = fmt.Sprintf("%s-%d", deviceName(u.Label, u.Serial), i)
		}
		used[name] = true
		fmt.Fprintf(w, "  - {name: %s, serial: %q, module: %s, environment: production}  # label %q\n", name, u.Serial, u.Module, u.Label)
	}
}

// deviceName makes a device name from a token label: lower case letters,
// digits and dashes; "hsm-SERIAL" when the label has none of them.
func deviceName(label, serial string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(label) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if name == "" {
		return "hsm-" + strings.ToLower(serial)
	}
	return name
}
