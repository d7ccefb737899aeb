#!/usr/bin/env bash
# Checks systemd/hsm-agent.service, its drop-in examples and the sysusers and
# tmpfiles snippets with the real systemd tools:
#   - `systemd-analyze verify` prints nothing (warnings count as failures) for
#     the unit alone, with each example drop-in, and with every commented
#     setting of vendor-library.conf switched on;
#   - `systemd-analyze security --offline=yes` exposure <= HSM_AGENT_MAX_EXPOSURE
#     (default 1.5) for the unit, <= HSM_AGENT_MAX_EXPOSURE_DROPIN (default 2.0)
#     with the nshield.conf drop-in;
#   - systemd-sysusers and systemd-tmpfiles, run against a scratch --root,
#     create the user and the directories with the right owner and modes
#     (needs root for chown; fails if not root).
# verify needs ExecStart='s binary to exist, so it runs on a scratch copy of the
# unit whose ExecStart points at HSM_AGENT_BIN (default: bin/hsm-agent when
# built, else a stub executable); nothing is installed on the host.
# Usage: packaging/test/check-unit.sh
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

need systemd-analyze "install systemd (Debian: apt-get install -y systemd); the unit cannot be checked without it"
need systemd-sysusers "install systemd (Debian: apt-get install -y systemd)"
need systemd-tmpfiles "install systemd (Debian: apt-get install -y systemd)"

MAX=${HSM_AGENT_MAX_EXPOSURE:-1.5}
MAX_DROPIN=${HSM_AGENT_MAX_EXPOSURE_DROPIN:-2.0}
SD="$REPO_ROOT/systemd"
UNIT="$SD/hsm-agent.service"
EXAMPLES="$SD/examples/hsm-agent.service.d"
EXEC_LINE='ExecStart=/usr/bin/hsm-agent run --config /etc/hsm-agent/config.yml'

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -f "$UNIT" ] || die "$UNIT does not exist"
grep -qxF "$EXEC_LINE" "$UNIT" || die "$UNIT: no line '$EXEC_LINE' (the packages install the binary as /usr/bin/hsm-agent)"

BIN=${HSM_AGENT_BIN:-}
if [ -z "$BIN" ] && [ -x "$REPO_ROOT/bin/hsm-agent" ]; then
	BIN="$REPO_ROOT/bin/hsm-agent"
fi
if [ -z "$BIN" ]; then
	mkdir -p "$TMP/bin"
	printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/hsm-agent"
	chmod 0755 "$TMP/bin/hsm-agent"
	BIN="$TMP/bin/hsm-agent"
	note "ExecStart points at a stub (bin/hsm-agent not built; set HSM_AGENT_BIN to use another binary)"
else
	note "ExecStart points at $BIN"
fi
[ -x "$BIN" ] || die "HSM_AGENT_BIN=$BIN is not an executable file"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac

# scratch_unit DIR [DROPIN...]: DIR/hsm-agent.service with ExecStart rewritten,
# plus the given drop-ins in DIR/hsm-agent.service.d/.
scratch_unit() {
	local dir=$1
	shift
	mkdir -p "$dir/hsm-agent.service.d"
	sed "s#^ExecStart=/usr/bin/hsm-agent #ExecStart=$BIN #" "$UNIT" >"$dir/hsm-agent.service"
	grep -q "^ExecStart=$BIN run " "$dir/hsm-agent.service" || die "could not rewrite ExecStart in the scratch copy"
	local f
	for f in "$@"; do cp "$f" "$dir/hsm-agent.service.d/"; done
}

# verify_clean NAME DIR: systemd-analyze verify must exit 0 and print nothing.
verify_clean() {
	local name=$1 dir=$2 out rc=0
	out=$(cd "$dir" && systemd-analyze verify --man=no "$dir/hsm-agent.service" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
		pass "verify: $name"
	else
		fail "verify: $name (exit $rc):"
		printf '%s\n' "$out" | sed 's/^/     /' >&2
	fi
}

# exposure DIR: prints the overall exposure score of DIR/hsm-agent.service.
exposure() {
	local out score
	out=$(systemd-analyze security --offline=yes --no-pager "$1/hsm-agent.service" 2>&1) || true
	score=$(printf '%s\n' "$out" | sed -n 's/^.*Overall exposure level for hsm-agent\.service: \([0-9][0-9]*\.[0-9]\).*$/\1/p')
	if [ -z "$score" ]; then
		printf '%s\n' "$out" | sed 's/^/     /' >&2
		return 1
	fi
	printf '%s\n' "$score"
}

# check_exposure NAME DIR MAX
check_exposure() {
	local name=$1 dir=$2 max=$3 score
	if ! score=$(exposure "$dir"); then
		fail "security: $name: no 'Overall exposure level' line in systemd-analyze security output"
		return
	fi
	if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
		pass "security: $name: exposure $score <= $max"
	else
		fail "security: $name: exposure $score > $max (run: systemd-analyze security --offline=yes $UNIT)"
	fi
}

# 1. verify: the unit alone and with each drop-in.
scratch_unit "$TMP/base"
verify_clean "hsm-agent.service" "$TMP/base"
for f in "$EXAMPLES"/*.conf; do
	scratch_unit "$TMP/$(basename "$f" .conf)" "$f"
	verify_clean "hsm-agent.service + $(basename "$f")" "$TMP/$(basename "$f" .conf)"
done
scratch_unit "$TMP/compat" "$SD/compat/50-credentials-compat.conf"
verify_clean "hsm-agent.service + compat/50-credentials-compat.conf" "$TMP/compat"
# Every commented KEY=value example in vendor-library.conf switched on at once.
mkdir -p "$TMP/relaxed-src"
sed -E 's/^#([A-Z][A-Za-z]+=)/\1/' "$EXAMPLES/vendor-library.conf" >"$TMP/relaxed-src/vendor-library.conf"
n=$(grep -cE '^[A-Z][A-Za-z]+=' "$TMP/relaxed-src/vendor-library.conf" || true)
[ "$n" -ge 5 ] || fail "vendor-library.conf: expected at least 5 commented settings to switch on, found $n"
scratch_unit "$TMP/relaxed" "$TMP/relaxed-src/vendor-library.conf"
verify_clean "hsm-agent.service + vendor-library.conf with its $n settings switched on" "$TMP/relaxed"

# Control: the same check must notice a warning-only mistake (exit 0 + message).
scratch_unit "$TMP/control"
printf '[Service]\nDeviceAllow=/dev/null rz\n' >"$TMP/control/hsm-agent.service.d/broken.conf"
out=$(cd "$TMP/control" && systemd-analyze verify --man=no "$TMP/control/hsm-agent.service" 2>&1) || true
if [ -n "$out" ]; then
	pass "verify control: a broken drop-in is reported"
else
	fail "verify control: systemd-analyze verify printed nothing for an invalid DeviceAllow=; the verify checks above prove nothing"
fi

# 2. security exposure.
check_exposure "hsm-agent.service" "$TMP/base" "$MAX"
check_exposure "hsm-agent.service + nshield.conf" "$TMP/nshield" "$MAX_DROPIN"

# 3. sysusers + tmpfiles against a scratch root.
if [ "$(id -u)" -ne 0 ]; then
	fail "sysusers/tmpfiles: must run as root (systemd-tmpfiles chowns to hsm-agent); rerun with sudo"
else
	R="$TMP/root"
	mkdir -p "$R/etc"
	if out=$(systemd-sysusers --root="$R" "$SD/sysusers.d/hsm-agent.conf" 2>&1) &&
		grep -q '^hsm-agent:x:[0-9]*:[0-9]*:[^:]*:/var/lib/hsm-agent:/usr/sbin/nologin$' "$R/etc/passwd" &&
		grep -q '^hsm-agent:x:[0-9]*:' "$R/etc/group"; then
		pass "sysusers: creates system user and group hsm-agent (home /var/lib/hsm-agent, nologin)"
	else
		fail "sysusers: hsm-agent user/group not created: $out"
	fi
	uid=$(awk -F: '$1 == "hsm-agent" { print $3 }' "$R/etc/passwd")
	if [ -n "$uid" ] && [ "$uid" -lt 1000 ]; then
		pass "sysusers: uid $uid is a system uid"
	else
		fail "sysusers: uid '$uid' is not a system uid (< 1000)"
	fi
	if out=$(systemd-tmpfiles --create --root="$R" "$SD/tmpfiles.d/hsm-agent.conf" 2>&1); then
		pass "tmpfiles: --create succeeds"
	else
		fail "tmpfiles: --create failed: $out"
	fi
	for d in /var/lib/hsm-agent /etc/hsm-agent/credentials /etc/hsm-agent/credentials/pins /etc/hsm-agent/credentials/desks; do
		got=$(stat -c '%a %u' "$R$d" 2>/dev/null || echo missing)
		if [ "$got" = "700 $uid" ]; then
			pass "tmpfiles: $d mode 0700 owner hsm-agent"
		else
			fail "tmpfiles: $d is '$got', want '700 $uid' (mode, uid of hsm-agent)"
		fi
	done
	# Every LoadCredential= directory of the unit must be created by tmpfiles.
	for d in $(sed -n 's/^LoadCredential=[^:]*:\(.*\)$/\1/p' "$UNIT"); do
		if [ -d "$R$d" ]; then
			pass "tmpfiles: creates LoadCredential= directory $d"
		else
			fail "tmpfiles: does not create $d; the service would fail to start (LoadCredential= needs it)"
		fi
	done
fi

finish check-unit
