# shellcheck shell=bash
# Shared helpers for packaging/test/*.sh: PASS/FAIL lines and a failure count.
# Source it; call `finish` at the end (exits 1 if anything failed).

FAILURES=0
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO_ROOT

pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; FAILURES=$((FAILURES + 1)); }
note() { printf '     %s\n' "$*"; }

# die: a failure that makes every later check meaningless.
die() { printf 'FAIL %s\n' "$*" >&2; exit 1; }

# need CMD HINT: fail loudly when a required tool is missing.
need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

finish() {
	local name=${1:-$(basename "$0")}
	if [ "$FAILURES" -ne 0 ]; then
		printf 'FAIL %s: %d check(s) failed\n' "$name" "$FAILURES" >&2
		exit 1
	fi
	printf 'PASS %s: all checks passed\n' "$name"
}
