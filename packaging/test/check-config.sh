#!/usr/bin/env bash
# Checks the example configuration the packages install as
# /etc/hsm-agent/config.yml with the real binary: `hsm-agent config check`
# passes on the file as shipped and with its commented examples (device,
# firmware policy, desk) switched on.
# Usage: packaging/test/check-config.sh [BINARY]   (default: bin/hsm-agent)
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

BIN=${1:-$REPO_ROOT/bin/hsm-agent}
[ -x "$BIN" ] || die "$BIN not found: build it first (go build -o bin/hsm-agent ./agent/cmd/hsm-agent)"
CFG="$REPO_ROOT/packaging/config.yml"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

check() { # check DESCRIPTION FILE
	local out
	if out=$("$BIN" config check "$2" 2>&1); then
		pass "$1: $(printf '%s\n' "$out" | tail -n 1)"
	else
		fail "$1:"
		printf '%s\n' "$out" | sed 's/^/     /' >&2
	fi
}

check "packaging/config.yml as shipped" "$CFG"

# Uncomment the examples: the commented list items under `devices: []`,
# `# desks:` and `# calendars:`, and `# firmware:`, `# rma:`,
# `# auto_close_after:`, `# api:`.
awk '
	/^devices: \[\]/ { print "devices:"; block = 1; next }
	/^# desks:/      { print "desks:"; block = 1; next }
	/^# calendars:/  { print "calendars:"; block = 1; next }
	/^# (firmware|rma|auto_close_after|api):/ { sub(/^# /, ""); print; block = 0; next }
	/^[^#]/          { block = 0 }
	block && /^#  /  { sub(/^#/, ""); print; next }
	{ print }
' "$CFG" >"$TMP/config.yml"
for want in "  - name: hsm-a" "firmware: " "  - name: vendor" "    rma_cutoff: " "rma: " "auto_close_after: " "api: "; do
	grep -q "^$want" "$TMP/config.yml" || fail "could not switch on the example '$want' in packaging/config.yml"
done
check "packaging/config.yml with its commented examples switched on" "$TMP/config.yml"

finish check-config
