#!/usr/bin/env bash
# Checks `hsm-agent service install|uninstall --root DIR` with the built
# binary (so the CLI wiring is covered too), in a scratch image root:
#   - with the default --exe /usr/bin/hsm-agent and --config, the unit written
#     is byte for byte systemd/hsm-agent.service (what the packages ship), and
#     the sysusers and tmpfiles snippets are systemd/'s;
#   - it is enabled (multi-user.target.wants symlink), the user exists in the
#     image's /etc/passwd, the directories are 0700 hsm-agent:hsm-agent;
#   - `systemd-analyze security --offline=yes` on the installed unit scores
#     <= HSM_AGENT_MAX_EXPOSURE (default 1.5);
#   - --systemd-version 249 adds the credentials compat drop-in;
#   - uninstall removes the unit, the symlink, the snippets and the drop-in.
# Nothing on the host is touched. Needs root (the directories are chowned).
# Usage: packaging/test/check-service-install.sh BINARY
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 BINARY"
BIN=$1
[ -x "$BIN" ] || die "$BIN is not executable: build it first (make build)"
[ "$(id -u)" -eq 0 ] || die "needs root: systemd-tmpfiles gives the directories to the hsm-agent user"
need systemd-analyze "install systemd (Debian: apt-get install -y systemd)"
MAX=${HSM_AGENT_MAX_EXPOSURE:-1.5}
SD="$REPO_ROOT/systemd"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
R="$TMP/root"
mkdir -p "$R/usr/bin"
cp "$BIN" "$R/usr/bin/hsm-agent"

if ! out=$("$BIN" service install --root "$R" --exe /usr/bin/hsm-agent --config /etc/hsm-agent/config.yml 2>&1); then
	printf '%s\n' "$out" | sed 's/^/     /' >&2
	die "hsm-agent service install --root failed"
fi
pass "service install --root exits 0"

same() { # same NAME INSTALLED SHIPPED
	if cmp -s "$2" "$3"; then pass "$1 equals $(basename "$3")"; else fail "$1 differs from $3"; fi
}
same "installed unit" "$R/etc/systemd/system/hsm-agent.service" "$SD/hsm-agent.service"
same "installed sysusers snippet" "$R/etc/sysusers.d/hsm-agent.conf" "$SD/sysusers.d/hsm-agent.conf"
same "installed tmpfiles snippet" "$R/etc/tmpfiles.d/hsm-agent.conf" "$SD/tmpfiles.d/hsm-agent.conf"

link=$(readlink "$R/etc/systemd/system/multi-user.target.wants/hsm-agent.service" || true)
if [ "$link" = /etc/systemd/system/hsm-agent.service ]; then pass "enabled (multi-user.target.wants)"; else fail "not enabled: symlink -> '$link'"; fi
if grep -q '^hsm-agent:.*:/var/lib/hsm-agent:/usr/sbin/nologin$' "$R/etc/passwd" 2>/dev/null; then
	pass "user hsm-agent in the image's /etc/passwd"
else
	fail "no hsm-agent user in $R/etc/passwd"
fi
uid=$(awk -F: '$1 == "hsm-agent" { print $3 }' "$R/etc/passwd" 2>/dev/null || true)
for d in /var/lib/hsm-agent /etc/hsm-agent/credentials /etc/hsm-agent/credentials/pins /etc/hsm-agent/credentials/desks; do
	got=$(stat -c '%a %u' "$R$d" 2>/dev/null || echo missing)
	if [ "$got" = "700 $uid" ]; then pass "$d 0700 hsm-agent"; else fail "$d: '$got', want '700 $uid'"; fi
done
if [ -e "$R/etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf" ]; then
	fail "compat drop-in installed without --systemd-version"
fi

out=$(systemd-analyze security --offline=yes --no-pager "$R/etc/systemd/system/hsm-agent.service" 2>&1 || true)
score=$(printf '%s\n' "$out" | sed -n 's/^.*Overall exposure level for hsm-agent\.service: \([0-9][0-9]*\.[0-9]\).*$/\1/p')
if [ -z "$score" ]; then
	fail "security: no exposure score for the installed unit"
	printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /' >&2
elif awk -v s="$score" -v m="$MAX" 'BEGIN { exit !(s <= m) }'; then
	pass "security: installed unit exposure $score <= $MAX"
else
	fail "security: installed unit exposure $score > $MAX"
fi

if out=$("$BIN" service uninstall --root "$R" 2>&1); then pass "service uninstall --root exits 0"; else
	fail "service uninstall --root failed:"
	printf '%s\n' "$out" | sed 's/^/     /' >&2
fi
for f in etc/systemd/system/hsm-agent.service etc/systemd/system/multi-user.target.wants/hsm-agent.service \
	etc/sysusers.d/hsm-agent.conf etc/tmpfiles.d/hsm-agent.conf; do
	if [ -e "$R/$f" ] || [ -L "$R/$f" ]; then fail "uninstall left /$f"; fi
done
[ -d "$R/var/lib/hsm-agent" ] || fail "uninstall removed /var/lib/hsm-agent (state must be kept)"

# systemd older than 251: the compat drop-in, removed again by uninstall.
if "$BIN" service install --root "$R" --exe /usr/bin/hsm-agent --systemd-version 249 >/dev/null 2>&1; then
	same "compat drop-in (systemd 249)" "$R/etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf" "$SD/compat/50-credentials-compat.conf"
	"$BIN" service uninstall --root "$R" >/dev/null 2>&1 || fail "uninstall after the systemd 249 install failed"
	[ ! -e "$R/etc/systemd/system/hsm-agent.service.d" ] || fail "uninstall left the drop-in directory"
else
	fail "service install --root --systemd-version 249 failed"
fi

finish check-service-install
