#!/usr/bin/env bash
# Checks a live /metrics page (or a saved copy) against the allow-list: every
# name in packaging/prometheus/metric-names.txt must have at least one sample.
# Use it on an agent that has polled at least one healthy inventory device with
# a contract expiry (some series exist only then, see collector/metrics.go).
# Usage: packaging/test/check-live-metrics.sh URL|FILE [NAMES_FILE]
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || die "usage: $0 URL|FILE [NAMES_FILE]"
NAMES=${2:-$REPO_ROOT/packaging/prometheus/metric-names.txt}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
case "$1" in
http://* | https://*)
	need curl "apt-get install -y curl"
	curl -fsS --max-time 10 "$1" >"$TMP/metrics" || die "could not fetch $1"
	;;
*) cp "$1" "$TMP/metrics" || die "cannot read $1" ;;
esac
grep -qE '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{| )' "$TMP/metrics" || die "$1 holds no metric samples"
n=0
while IFS= read -r name; do
	case "$name" in '' | '#'*) continue ;; esac
	n=$((n + 1))
	if grep -qE "^${name}(\{| )" "$TMP/metrics"; then
		pass "$name"
	else
		fail "$name: listed in $(basename "$NAMES") but no sample on $1"
	fi
done <"$NAMES"
[ "$n" -gt 0 ] || die "$NAMES lists no names"
finish check-live-metrics
