#!/usr/bin/env bash
# Runs every packaging check in order and fails if any failed:
#   check-unit.sh        systemd-analyze verify + security (<= 1.5), sysusers, tmpfiles
#   check-prometheus.sh  promtool check/test rules, check config, go test ./packaging/promcheck ./systemd
#   check-versions.sh    VERSION -> package version mapping, dpkg and rpm ordering
#   check-config.sh      the packaged example config passes `hsm-agent config check`
#   check-sandbox.sh     the agent under strace stays inside the unit's sandbox
#   build-packages.sh    .deb and .rpm into a scratch directory
#   test-deb.sh          dpkg -i / upgrade / remove / purge on this machine
#   test-rpm.sh          rpm metadata, payload in a scratch root, scriptlets
# Needs root (dpkg -i, rpm --root, unshare) and a built binary.
# Usage: packaging/test/run-all.sh [BINARY]   (default: bin/hsm-agent)
#        HSM_AGENT_VERSION (default 0.0.0-test) sets the test packages' version.
#   check-sandbox.sh and test-deb.sh also need: strace, softhsm2, curl (apt).
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

BIN=${1:-$REPO_ROOT/bin/hsm-agent}
[ -x "$BIN" ] || die "$BIN not found: build it first (go build -o bin/hsm-agent ./agent/cmd/hsm-agent)"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
[ "$(id -u)" -eq 0 ] || die "run-all needs root (test-deb installs the package); run: sudo $0 $*"
T="$REPO_ROOT/packaging/test"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

step() { # step NAME CMD...
	local name=$1
	shift
	echo "==== $name"
	if "$@"; then :; else
		FAILURES=$((FAILURES + 1))
		printf 'FAIL %s\n' "$name" >&2
	fi
}

step check-unit env HSM_AGENT_BIN="$BIN" "$T/check-unit.sh"
step check-prometheus "$T/check-prometheus.sh"
step check-versions "$T/check-versions.sh"
step check-config "$T/check-config.sh" "$BIN"
step check-sandbox "$T/check-sandbox.sh" "$BIN"
step check-service-install "$T/check-service-install.sh" "$BIN"
if step build-packages "$REPO_ROOT/packaging/build-packages.sh" "${HSM_AGENT_VERSION:-0.0.0-test}" "$BIN" "$OUT"; then
	deb=$(find "$OUT" -name 'hsm-agent_*.deb' | head -n 1)
	rpm=$(find "$OUT" -name 'hsm-agent-*.rpm' | head -n 1)
	step test-deb "$T/test-deb.sh" "$deb"
	step test-rpm "$T/test-rpm.sh" "$rpm"
fi
finish run-all
