#!/usr/bin/env bash
# Checks the hsm-agent .rpm on a Debian machine (rpm from Debian's `rpm`
# package), without touching the host's files:
#   - metadata: name, version, architecture, file list with modes, owners and
#     flags (%config(noreplace) on /etc/hsm-agent/config.yml);
#   - payload: installed with `rpm --root` into a scratch root whose
#     /etc/passwd comes from the package's own sysusers snippet; owners, modes
#     and `rpm -V` are checked there;
#   - scriptlets: %pre, %post, %preun and %postun run with /bin/sh exactly as
#     rpm runs them (script file, $1 = package count), against logging fakes
#     of systemctl, getent, systemd-sysusers, useradd and groupadd, both with
#     systemd "running" (a private mount namespace where /run/systemd/system
#     exists) and without.
# Must run as root (rpm --root, unshare --mount).
# Usage: packaging/test/test-rpm.sh PATH/hsm-agent-VERSION-1.ARCH.rpm
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

UNIT=hsm-agent.service
COMPAT=/etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf

# run_scriptlet NAME ARG [ENV...]: runs the extracted scriptlet NAME with $1=ARG
# and a PATH holding only the fakes; the fakes' calls go to $LOG.
run_scriptlet() {
	local name=$1 arg=$2
	shift 2
	: >"$LOG"
	env -i PATH="$FAKE" LOG="$LOG" "$@" /bin/sh "$TMP/$name.sh" "$arg" >"$TMP/out" 2>&1 ||
		fail "%$name $arg exited non-zero: $(cat "$TMP/out")"
}

calls() { tr '\n' ';' <"$LOG"; }

# expect_calls DESCRIPTION WANT: the exact sequence of fake calls (';'-joined).
expect_calls() {
	local got
	got=$(calls)
	if [ "$got" = "$2" ]; then
		pass "$1: ${2:-no calls}"
	else
		fail "$1: calls '$got', want '$2'"
	fi
}

make_fakes() {
	mkdir -p "$FAKE"
	local c
	for c in systemctl systemd-sysusers useradd groupadd mkdir cp rm rmdir; do
		cat >"$FAKE/$c" <<EOF
#!/bin/sh
printf '%s\n' "$c \$*" >>"\$LOG"
if [ "$c" = systemd-sysusers ]; then
	while IFS= read -r line; do printf 'stdin: %s\n' "\$line" >>"\$LOG"; done
fi
if [ "$c" = systemctl ] && [ "\$1" = --version ]; then
	echo "systemd \${FAKE_SYSTEMD_VERSION:-252} (fake)"
fi
exit 0
EOF
	done
	ln -s "$(command -v awk)" "$FAKE/awk"
	cat >"$FAKE/getent" <<'EOF'
#!/bin/sh
printf 'getent %s\n' "$*" >>"$LOG"
[ "${FAKE_GETENT:-}" = found ] && exit 0
exit 2
EOF
	chmod 0755 "$FAKE"/*
}

# scriptlet_checks RUNNING: RUNNING is yes inside the namespace.
scriptlet_checks() {
	local running=$1 reload="" stop="" try=""
	local ver="systemctl --version;"
	local rmcompat="rm -f $COMPAT;rmdir ${COMPAT%/*};"
	if [ "$running" = yes ]; then
		reload="systemctl daemon-reload;"
		stop="systemctl stop $UNIT;"
		try="systemctl try-restart $UNIT;"
	fi
	run_scriptlet post 1
	expect_calls "%post 1 (install, systemd running: $running)" "${ver}${reload}systemctl enable $UNIT;"
	run_scriptlet post 2
	expect_calls "%post 2 (upgrade: no enable, no start)" "${ver}${reload}"
	run_scriptlet post 1 FAKE_SYSTEMD_VERSION=249
	expect_calls "%post 1 on systemd 249 (installs the credentials compat drop-in)" \
		"${ver}mkdir -p ${COMPAT%/*};cp /usr/share/hsm-agent/50-credentials-compat.conf $COMPAT;${reload}systemctl enable $UNIT;"
	run_scriptlet preun 0
	expect_calls "%preun 0 (erase: stop under a running systemd, disable)" "${stop}systemctl disable $UNIT;"
	run_scriptlet preun 1
	expect_calls "%preun 1 (upgrade: nothing stopped)" ""
	run_scriptlet postun 1
	expect_calls "%postun 1 (upgrade: try-restart only under a running systemd)" "${reload}${try}"
	run_scriptlet postun 0
	expect_calls "%postun 0 (erased: compat drop-in removed)" "${rmcompat}${reload}"
}

if [ "${1:-}" = "--systemd-phase" ]; then
	TMP=$2 FAKE=$2/fake LOG=$2/calls.log
	mount -t tmpfs -o mode=0755 tmpfs /run/systemd
	mkdir -p /run/systemd/system
	echo "---- scriptlets, systemd running (simulated)"
	scriptlet_checks yes
	finish "test-rpm (systemd running)"
	exit 0
fi

[ $# -eq 1 ] || die "usage: $0 PATH/hsm-agent-VERSION-1.ARCH.rpm"
[ -f "$1" ] || die "$1: no such file"
RPM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ "$(id -u)" -eq 0 ] || die "test-rpm must run as root (rpm --root, unshare --mount); run: sudo $0 $1"
need rpm "apt-get install -y rpm"
need unshare "install util-linux"
need systemd-sysusers "install systemd"
[ -d /run/systemd/system ] && die "systemd is running as PID 1 here; run this test in a CI container or VM"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAKE=$TMP/fake LOG=$TMP/calls.log

q() { rpm -qp --nosignature "$@" "$RPM" 2>/dev/null; }

echo "---- metadata"
[ "$(q --qf '%{NAME}')" = hsm-agent ] && pass "name hsm-agent" || fail "name is '$(q --qf '%{NAME}')'"
version=$(q --qf '%{VERSION}-%{RELEASE}.%{ARCH}')
case "$(basename "$RPM")" in
"hsm-agent-$version.rpm") pass "file name matches $version" ;;
*) fail "file name $(basename "$RPM") does not match hsm-agent-$version.rpm" ;;
esac
q --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' | sed 's/  */ /g' >"$TMP/files"
while read -r want; do
	if grep -qxF -- "$want" "$TMP/files"; then
		pass "file: $want"
	else
		fail "file: no '$want' in: $(grep -F -- "${want##* }" "$TMP/files" || echo '(not packaged)')"
	fi
done <<'EOF'
-rwxr-xr-x root root /usr/bin/hsm-agent
-rw-r--r-- root root /usr/lib/systemd/system/hsm-agent.service
-rw-r--r-- root root /usr/lib/sysusers.d/hsm-agent.conf
-rw-r--r-- root root /usr/lib/tmpfiles.d/hsm-agent.conf
-rw-r--r-- root root /usr/share/hsm-agent/50-credentials-compat.conf
drwxr-xr-x root root /etc/hsm-agent
-rw-r--r-- root root cn /etc/hsm-agent/config.yml
drwx------ hsm-agent hsm-agent /etc/hsm-agent/credentials
drwx------ hsm-agent hsm-agent /etc/hsm-agent/credentials/pins
drwx------ hsm-agent hsm-agent /etc/hsm-agent/credentials/desks
drwx------ hsm-agent hsm-agent /var/lib/hsm-agent
-rw-r--r-- root root d /usr/share/doc/hsm-agent/examples/hsm-agent.service.d/nshield.conf
-rw-r--r-- root root d /usr/share/doc/hsm-agent/prometheus/hsm-agent.rules.yml
EOF
if q --qf '[%{REQUIRENAME}\n]' | grep -q '^libc.so.6'; then
	pass "requires libc.so.6 (automatic ELF dependencies)"
else
	fail "no libc.so.6 requirement: $(q --qf '[%{REQUIRENAME} ]')"
fi

echo "---- payload in a scratch root"
R=$TMP/root
mkdir -p "$R/etc"
systemd-sysusers --root="$R" "$REPO_ROOT/systemd/sysusers.d/hsm-agent.conf" >/dev/null 2>&1 ||
	die "systemd-sysusers --root failed"
uid=$(awk -F: '$1 == "hsm-agent" { print $3 }' "$R/etc/passwd")
if out=$(rpm --root="$R" --initdb 2>&1 && rpm --root="$R" -i --nodeps --noscripts --notriggers --nosignature "$RPM" 2>&1); then
	pass "rpm -i into the scratch root"
else
	fail "rpm -i into the scratch root: $out"
fi
for spec in "/usr/bin/hsm-agent 755 0" "/usr/lib/systemd/system/hsm-agent.service 644 0" \
	"/etc/hsm-agent/config.yml 644 0" "/etc/hsm-agent/credentials 700 $uid" \
	"/etc/hsm-agent/credentials/pins 700 $uid" "/etc/hsm-agent/credentials/desks 700 $uid" \
	"/var/lib/hsm-agent 700 $uid"; do
	set -- $spec
	got=$(stat -c '%a %u' "$R$1" 2>/dev/null || echo missing)
	[ "$got" = "$2 $3" ] && pass "installed $1: mode $2 uid $3" || fail "installed $1: '$got', want '$2 $3'"
done
cmp -s "$R/usr/lib/systemd/system/hsm-agent.service" "$REPO_ROOT/systemd/hsm-agent.service" &&
	pass "installed unit is systemd/hsm-agent.service" || fail "installed unit differs from systemd/hsm-agent.service"
if out=$(rpm --root="$R" -V --nodeps hsm-agent 2>&1); then
	pass "rpm -V: installed files match the package"
else
	fail "rpm -V: $out"
fi

echo "---- scriptlets"
for s in PREIN:pre POSTIN:post PREUN:preun POSTUN:postun; do
	q --qf "%{${s%%:*}}" >"$TMP/${s#*:}.sh"
	if [ -s "$TMP/${s#*:}.sh" ] && [ "$(q --qf "%{${s%%:*}PROG}")" = /bin/sh ]; then
		pass "%${s#*:} scriptlet present (/bin/sh)"
	else
		fail "%${s#*:} scriptlet missing or not /bin/sh"
	fi
	sh -n "$TMP/${s#*:}.sh" || fail "%${s#*:}: shell syntax error"
done
make_fakes
sysusers_line=$(grep -v '^[[:space:]]*\(#\|$\)' "$REPO_ROOT/systemd/sysusers.d/hsm-agent.conf")
run_scriptlet pre 1
expect_calls "%pre, no user yet, systemd-sysusers present" \
	"getent passwd hsm-agent;systemd-sysusers --replace=/usr/lib/sysusers.d/hsm-agent.conf -;stdin: $sysusers_line;"
run_scriptlet pre 2 FAKE_GETENT=found
expect_calls "%pre, user exists" "getent passwd hsm-agent;"
rm "$FAKE/systemd-sysusers"
run_scriptlet pre 1
expect_calls "%pre, no user, no systemd-sysusers" \
	"getent passwd hsm-agent;getent group hsm-agent;groupadd -r hsm-agent;useradd -r -g hsm-agent -d /var/lib/hsm-agent -M -s /usr/sbin/nologin -c HSM health agent hsm-agent;"
echo "---- scriptlets, systemd not running"
scriptlet_checks no
if ! unshare --mount --propagation private "$0" --systemd-phase "$TMP"; then
	fail "scriptlets with systemd running failed"
fi

finish test-rpm
