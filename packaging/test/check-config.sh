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
# The examples name secret files under /etc/hsm-agent/credentials; `config
# check` reads them as the daemon would, so put them under $TMP.
sed -i "s#/etc/hsm-agent/credentials/#$TMP/credentials/#g" "$TMP/config.yml"
mkdir -p "$TMP/credentials/desks" "$TMP/credentials/pins"
printf 'example-signing-secret\n' >"$TMP/credentials/desks/vendor.secret"
printf 'example-api-token-0123456789\n' >"$TMP/credentials/api.token"
printf '1234\n' >"$TMP/credentials/pins/hsm-a"
chmod 0600 "$TMP"/credentials/desks/* "$TMP"/credentials/api.token "$TMP"/credentials/pins/*
for want in "  - name: hsm-a" "firmware: " "  - name: vendor" "     rma_cutoff: " "rma: " "auto_close_after: " "api: "; do
	grep -q "^$want" "$TMP/config.yml" || fail "could not switch on the example '$want' in packaging/config.yml"
done
check "packaging/config.yml with its commented examples switched on" "$TMP/config.yml"

finish check-config
