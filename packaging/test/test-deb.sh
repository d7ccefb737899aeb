#!/usr/bin/env bash
# Installs the hsm-agent .deb on this machine for real and checks it, then
# purges it and checks that nothing is left. Must run as root; changes the
# host's dpkg database, /etc and /var/lib (and creates the hsm-agent system
# user, which purge keeps, as Debian does for system users).
#
# Part 1, as the machine is (no systemd as PID 1 in CI containers):
#   dpkg -i; files, modes, owners, conffile, the user, the unit enabled,
#   `hsm-agent config check /etc/hsm-agent/config.yml` as the service user
#   with the installed binary, `systemd-analyze verify` of the installed unit;
#   dpkg --purge leaves nothing behind.
# Part 2, with a running systemd simulated in a private mount namespace
# (/run/systemd/system exists there) and a systemctl that logs its calls:
#   first install enables but does not start; an upgrade (the same package
#   repacked with a higher version) try-restarts, does not stop, keeps the
#   admin's config change, state and PIN files and does not re-enable a unit
#   the admin disabled; remove stops and disables and keeps config and state;
#   purge removes them.
# Part 3, systemd 249 simulated: postinst installs the drop-in that turns off
#   LoadCredential= directories (unsupported before 251), purge removes it.
#
# Usage: packaging/test/test-deb.sh PATH/hsm-agent_VERSION_ARCH.deb
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

UNIT=hsm-agent.service
UNIT_PATH=/lib/systemd/system/hsm-agent.service
WANTS=/etc/systemd/system/multi-user.target.wants/hsm-agent.service
REAL_SYSTEMCTL=/usr/bin/systemctl
COMPAT=/etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf

# ---------------------------------------------------------------- helpers

# expect_stat PATH "MODE USER GROUP"
expect_stat() {
	local got
	got=$(stat -c '%a %U %G' "$1" 2>/dev/null || echo "missing")
	if [ "$got" = "$2" ]; then
		pass "$1 is $2"
	else
		fail "$1 is '$got', want '$2' (mode owner group)"
	fi
}

pkg_status() { dpkg-query -W -f='${Status}' hsm-agent 2>/dev/null || echo "unknown"; }

check_installed() {
	local version=$1
	local st
	st=$(pkg_status)
	[ "$st" = "install ok installed" ] && pass "dpkg status: $st" || fail "dpkg status is '$st', want 'install ok installed'"
	local v
	v=$(dpkg-query -W -f='${Version}' hsm-agent 2>/dev/null || true)
	[ "$v" = "$version" ] && pass "installed version $v" || fail "installed version '$v', want '$version'"
	expect_stat /usr/bin/hsm-agent "755 root root"
	expect_stat "$UNIT_PATH" "644 root root"
	expect_stat /usr/lib/sysusers.d/hsm-agent.conf "644 root root"
	expect_stat /usr/lib/tmpfiles.d/hsm-agent.conf "644 root root"
	expect_stat /etc/hsm-agent "755 root root"
	expect_stat /etc/hsm-agent/config.yml "644 root root"
	expect_stat /etc/hsm-agent/credentials "700 hsm-agent hsm-agent"
	expect_stat /etc/hsm-agent/credentials/pins "700 hsm-agent hsm-agent"
	expect_stat /etc/hsm-agent/credentials/desks "700 hsm-agent hsm-agent"
	expect_stat /var/lib/hsm-agent "700 hsm-agent hsm-agent"
	expect_stat /usr/share/doc/hsm-agent/examples/hsm-agent.service.d/nshield.conf "644 root root"
	if dpkg-query -W -f='${Conffiles}\n' hsm-agent | grep -q '^ /etc/hsm-agent/config.yml '; then
		pass "/etc/hsm-agent/config.yml is a conffile"
	else
		fail "/etc/hsm-agent/config.yml is not a conffile: $(dpkg-query -W -f='${Conffiles}' hsm-agent)"
	fi
	if cmp -s "$UNIT_PATH" "$REPO_ROOT/systemd/hsm-agent.service"; then
		pass "installed unit is systemd/hsm-agent.service"
	else
		fail "installed $UNIT_PATH differs from systemd/hsm-agent.service (package built from another tree?)"
	fi
	local pw
	pw=$(getent passwd hsm-agent || true)
	if [ -z "$pw" ]; then
		fail "user hsm-agent does not exist"
	else
		local uid home shell
		uid=$(printf '%s' "$pw" | cut -d: -f3)
		home=$(printf '%s' "$pw" | cut -d: -f6)
		shell=$(printf '%s' "$pw" | cut -d: -f7)
		[ "$uid" -lt 1000 ] && pass "user hsm-agent is a system user (uid $uid)" || fail "user hsm-agent has uid $uid, want a system uid < 1000"
		[ "$home" = /var/lib/hsm-agent ] && pass "user hsm-agent home $home" || fail "user hsm-agent home '$home', want /var/lib/hsm-agent"
		case "$shell" in */nologin | /bin/false) pass "user hsm-agent shell $shell" ;; *) fail "user hsm-agent shell '$shell', want nologin" ;; esac
	fi
	getent group hsm-agent >/dev/null && pass "group hsm-agent exists" || fail "group hsm-agent does not exist"
}

# check_enabled yes|no
check_enabled() {
	local st
	st=$("$REAL_SYSTEMCTL" --root=/ is-enabled "$UNIT" 2>/dev/null || true)
	if [ "$1" = yes ]; then
		if [ "$st" = enabled ] && [ "$(readlink "$WANTS" || true)" = "$UNIT_PATH" ]; then
			pass "$UNIT is enabled ($WANTS -> $UNIT_PATH)"
		else
			fail "$UNIT is '$st' (link: '$(readlink "$WANTS" || true)'), want enabled"
		fi
	else
		if [ "$st" != enabled ] && [ ! -L "$WANTS" ]; then
			pass "$UNIT is not enabled ($st)"
		else
			fail "$UNIT is '$st', want not enabled"
		fi
	fi
}

check_purged() {
	local st
	st=$(pkg_status)
	case "$st" in
	unknown | "unknown ok not-installed" | "deinstall ok not-installed" | "purge ok not-installed") pass "dpkg status after purge: $st" ;;
	*) fail "dpkg status after purge is '$st', want not-installed" ;;
	esac
	local p left=0
	for p in /usr/bin/hsm-agent "$UNIT_PATH" /usr/lib/sysusers.d/hsm-agent.conf /usr/lib/tmpfiles.d/hsm-agent.conf \
		/etc/hsm-agent /var/lib/hsm-agent /usr/share/doc/hsm-agent /usr/share/hsm-agent "$WANTS" "$COMPAT" \
		/var/lib/dpkg/info/hsm-agent.list \
		/var/lib/dpkg/info/hsm-agent.postrm; do
		if [ -e "$p" ] || [ -L "$p" ]; then
			fail "$p still exists after purge"
			left=1
		fi
	done
	[ "$left" -eq 0 ] && pass "purge removed binary, unit, snippets, /etc/hsm-agent, /var/lib/hsm-agent, docs and the enable link"
	if find /etc/systemd/system -xtype l -name "$UNIT" 2>/dev/null | grep -q .; then
		fail "dangling $UNIT symlinks remain in /etc/systemd/system"
	fi
}

# dpkg_ok DESCRIPTION dpkg ARGS...: run dpkg, fail with its output on error.
dpkg_ok() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$what"
	else
		fail "$what: $* failed:"
		printf '%s\n' "$out" | sed 's/^/     /' >&2
		return 1
	fi
}

# ------------------------------------------------- part 2 (inner process)

# Runs inside `unshare --mount`: /run/systemd/system exists only here.
systemd_phase() {
	local deb=$1 updeb=$2 version=$3 upversion=$4 tmp=$5
	mount -t tmpfs -o mode=0755 tmpfs /run/systemd
	mkdir -p /run/systemd/system
	local log=$tmp/systemctl.log
	mkdir -p "$tmp/fakebin"
	cat >"$tmp/fakebin/systemctl" <<EOF
#!/bin/sh
# Logs every call; enable/disable/is-enabled act on the unit files for real
# (offline, --root=/), everything that would talk to PID 1 only logs.
echo "systemctl \$*" >>"$log"
case "\$1" in
enable | disable | is-enabled) exec $REAL_SYSTEMCTL --root=/ "\$@" ;;
--version)
	if [ -n "\${FAKE_SYSTEMD_VERSION:-}" ]; then
		echo "systemd \$FAKE_SYSTEMD_VERSION (\$FAKE_SYSTEMD_VERSION-fake)"
		exit 0
	fi
	exec $REAL_SYSTEMCTL --version
	;;
esac
exit 0
EOF
	chmod 0755 "$tmp/fakebin/systemctl"
	export PATH="$tmp/fakebin:$PATH"
	: >"$log"
	logged() { grep -qE "$1" "$log"; }
	expect_logged() {
		if logged "$1"; then pass "$2"; else fail "$2: no '$1' in the systemctl calls: $(tr '\n' ';' <"$log")"; fi
	}
	expect_not_logged() {
		if logged "$1"; then fail "$2: systemctl calls: $(tr '\n' ';' <"$log")"; else pass "$2"; fi
	}

	echo "---- part 2: systemd running (simulated), systemctl calls logged"
	dpkg_ok "dpkg -i (first install, systemd running)" dpkg -i "$deb" || return
	expect_logged '^systemctl daemon-reload$' "first install: daemon-reload"
	expect_logged "^systemctl enable $UNIT\$" "first install: enable"
	expect_not_logged '(^systemctl (start|restart|try-restart|reload-or-restart|stop))|--now' "first install: the service is not started"
	check_enabled yes
	[ ! -e "$COMPAT" ] && pass "systemd $("$REAL_SYSTEMCTL" --version | awk 'NR == 1 { print $2 }') loads credential directories: no compat drop-in" ||
		fail "$COMPAT written although this systemd supports credential directories"

	# Local state the upgrade must keep.
	printf '# local change\n' >>/etc/hsm-agent/config.yml
	install -m 0600 -o hsm-agent -g hsm-agent /dev/null /var/lib/hsm-agent/state.db
	printf '1234\n' | install -m 0600 -o hsm-agent -g hsm-agent /dev/stdin /etc/hsm-agent/credentials/pins/hsm-a

	: >"$log"
	dpkg_ok "dpkg -i $version -> $upversion (upgrade)" dpkg -i "$updeb" || return
	expect_logged "^systemctl try-restart $UNIT\$" "upgrade: try-restart (restarts only a running daemon)"
	expect_not_logged "^systemctl (stop|start|disable|enable)( |\$)" "upgrade: no stop, start, disable or enable"
	grep -q '^# local change$' /etc/hsm-agent/config.yml && pass "upgrade kept the admin's change to config.yml" || fail "upgrade lost the admin's change to /etc/hsm-agent/config.yml"
	[ -f /var/lib/hsm-agent/state.db ] && pass "upgrade kept /var/lib/hsm-agent/state.db" || fail "upgrade removed /var/lib/hsm-agent/state.db"
	[ "$(cat /etc/hsm-agent/credentials/pins/hsm-a 2>/dev/null)" = 1234 ] && pass "upgrade kept the PIN file" || fail "upgrade lost /etc/hsm-agent/credentials/pins/hsm-a"
	expect_stat /etc/hsm-agent/credentials/pins/hsm-a "600 hsm-agent hsm-agent"
	check_installed "$upversion"
	check_enabled yes

	"$REAL_SYSTEMCTL" --root=/ disable "$UNIT" >/dev/null 2>&1
	: >"$log"
	dpkg_ok "dpkg -i $upversion again (reinstall while the admin disabled the unit)" dpkg -i "$updeb" || return
	expect_not_logged "^systemctl enable" "upgrade: does not enable a unit the admin disabled"
	check_enabled no
	"$REAL_SYSTEMCTL" --root=/ enable "$UNIT" >/dev/null 2>&1

	: >"$log"
	dpkg_ok "dpkg -r (remove)" dpkg -r hsm-agent || return
	expect_logged "^systemctl stop $UNIT\$" "remove: stop"
	expect_logged "^systemctl disable $UNIT\$" "remove: disable"
	check_enabled no
	local st
	st=$(pkg_status)
	[ "$st" = "deinstall ok config-files" ] && pass "dpkg status after remove: $st" || fail "dpkg status after remove is '$st', want 'deinstall ok config-files'"
	[ ! -e /usr/bin/hsm-agent ] && [ ! -e "$UNIT_PATH" ] && pass "remove deleted the binary and the unit" || fail "remove left the binary or the unit"
	[ -f /etc/hsm-agent/config.yml ] && pass "remove kept the conffile" || fail "remove deleted /etc/hsm-agent/config.yml"
	[ -f /var/lib/hsm-agent/state.db ] && [ -f /etc/hsm-agent/credentials/pins/hsm-a ] && pass "remove kept state and credentials" || fail "remove deleted state or credentials"

	: >"$log"
	dpkg_ok "dpkg --purge" dpkg --purge hsm-agent || return
	check_purged
	expect_logged '^systemctl daemon-reload$' "purge: daemon-reload"

	echo "---- part 3: systemd 249 (simulated): credential directories not supported"
	export FAKE_SYSTEMD_VERSION=249
	dpkg_ok "dpkg -i (systemd 249)" dpkg -i "$deb" || return
	if cmp -s "$COMPAT" "$REPO_ROOT/systemd/compat/50-credentials-compat.conf"; then
		pass "systemd 249: postinst installed $COMPAT"
	else
		fail "systemd 249: $COMPAT missing or not systemd/compat/50-credentials-compat.conf"
	fi
	local out
	if out=$(systemd-analyze verify --man=no "$UNIT_PATH" 2>&1) && [ -z "$out" ]; then
		pass "systemd-analyze verify of the installed unit with the compat drop-in is clean"
	else
		fail "systemd-analyze verify $UNIT_PATH with the compat drop-in: $out"
	fi
	unset FAKE_SYSTEMD_VERSION
	dpkg_ok "dpkg --purge (systemd 249)" dpkg --purge hsm-agent || return
	[ ! -e "$COMPAT" ] && [ ! -e "${COMPAT%/*}" ] && pass "purge removed the compat drop-in and its directory" ||
		fail "purge left $COMPAT or ${COMPAT%/*}"
	check_purged
}

if [ "${1:-}" = "--systemd-phase" ]; then
	shift
	systemd_phase "$@" || true
	finish "test-deb (systemd running)"
	exit 0
fi

# ------------------------------------------------------------------- main

[ $# -eq 1 ] || die "usage: $0 PATH/hsm-agent_VERSION_ARCH.deb"
[ -f "$1" ] || die "$1: no such file"
DEB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ "$(id -u)" -eq 0 ] || die "test-deb must run as root: it installs $DEB with dpkg -i and purges it (run: sudo $0 $1)"
need dpkg "this test needs a Debian-based machine"
need dpkg-deb "this test needs a Debian-based machine"
need unshare "install util-linux"
need systemd-analyze "install systemd"
[ -x "$REAL_SYSTEMCTL" ] || die "$REAL_SYSTEMCTL not found: install systemd"
[ "$(dpkg-deb -f "$DEB" Package)" = hsm-agent ] || die "$DEB is not the hsm-agent package"
case "$(pkg_status)" in
unknown | "unknown ok not-installed" | "purge ok not-installed" | "deinstall ok not-installed") ;;
*) die "hsm-agent is already on this machine ($(pkg_status)); this test would destroy that install. Remove it first: dpkg --purge hsm-agent" ;;
esac
[ ! -e /etc/hsm-agent ] && [ ! -e /var/lib/hsm-agent ] || die "/etc/hsm-agent or /var/lib/hsm-agent exists without the package; move it away first"
if [ -d /run/systemd/system ]; then
	die "systemd is running as PID 1 here: this test simulates it and would start/stop the real service; run it in a CI container or VM"
fi

TMP=$(mktemp -d)
cleanup() {
	case "$(pkg_status)" in
	*" installed" | *config-files | *half-*) dpkg --purge hsm-agent >/dev/null 2>&1 || true ;;
	esac
	rm -rf "$TMP"
}
trap cleanup EXIT

VERSION=$(dpkg-deb -f "$DEB" Version)
UPVERSION="$VERSION+upgradetest1"
# The upgrade package: the same contents, a higher version.
dpkg-deb -R "$DEB" "$TMP/up"
sed -i "s/^Version: .*/Version: $UPVERSION/" "$TMP/up/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -z1 -b "$TMP/up" "$TMP/hsm-agent_upgrade.deb" >/dev/null
dpkg --compare-versions "$UPVERSION" gt "$VERSION" || die "cannot make a higher version than $VERSION"

echo "---- part 1: install, check, purge (systemd not running)"
if dpkg_ok "dpkg -i $(basename "$DEB")" dpkg -i "$DEB"; then
	check_installed "$VERSION"
	check_enabled yes
	if out=$(runuser -u hsm-agent -- /usr/bin/hsm-agent config check /etc/hsm-agent/config.yml 2>&1); then
		pass "hsm-agent config check /etc/hsm-agent/config.yml (installed binary, as user hsm-agent): $(printf '%s' "$out" | tail -n 1)"
	else
		fail "hsm-agent config check /etc/hsm-agent/config.yml failed:"
		printf '%s\n' "$out" | sed 's/^/     /' >&2
	fi
	if out=$(systemd-analyze verify --man=no "$UNIT_PATH" 2>&1) && [ -z "$out" ]; then
		pass "systemd-analyze verify $UNIT_PATH (installed, with /usr/bin/hsm-agent present) is clean"
	else
		fail "systemd-analyze verify $UNIT_PATH: $out"
	fi
	dpkg_ok "dpkg --purge hsm-agent" dpkg --purge hsm-agent && check_purged
	getent passwd hsm-agent >/dev/null && note "user hsm-agent kept after purge (Debian keeps system users)"
fi

echo "---- part 2 runs in a private mount namespace"
if ! unshare --mount --propagation private "$0" --systemd-phase "$DEB" "$TMP/hsm-agent_upgrade.deb" "$VERSION" "$UPVERSION" "$TMP"; then
	fail "part 2 (systemd running) failed"
fi

finish test-deb
