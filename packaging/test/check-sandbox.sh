#!/usr/bin/env bash
# Checks that the agent still works inside the sandbox of
# systemd/hsm-agent.service, on a machine where systemd is not PID 1 (so the
# unit cannot be started for real). It runs the real binary against a real
# SoftHSM2 token (probe and logged-in self-test, worker processes replaced
# every reinit_interval) under strace -f, and checks what every process of the
# service did against the unit's settings:
#   - every system call is allowed by the unit's SystemCallFilter= lines
#     (expanded with `systemd-analyze syscall-filter`);
#   - MemoryDenyWriteExecute=yes: no writable+executable mapping, no
#     mprotect() adding PROT_EXEC;
#   - RestrictAddressFamilies=: every socket() family is allowed;
#   - ProtectSystem=strict: files opened for writing are only under the state
#     directory or the token store (ReadWritePaths= in softhsm.conf);
#   - ProtectHome=yes: nothing under /home, /root or /run/user was opened;
#   - the probe worker (same binary) was spawned, and the daemon reported the
#     token healthy with a successful login_sign.
# Usage: packaging/test/check-sandbox.sh [BINARY]   (default: bin/hsm-agent)
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

BIN=${1:-$REPO_ROOT/bin/hsm-agent}
[ -x "$BIN" ] || die "$BIN not found: build it first (go build -o bin/hsm-agent ./agent/cmd/hsm-agent)"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
need strace "apt-get install -y strace"
need softhsm2-util "apt-get install -y softhsm2"
need curl "apt-get install -y curl"
need systemd-analyze "install systemd"
LIB=/usr/lib/softhsm/libsofthsm2.so
[ -f "$LIB" ] || die "$LIB not found: apt-get install -y softhsm2"
UNIT=${HSM_AGENT_UNIT:-$REPO_ROOT/systemd/hsm-agent.service}

TMP=$(mktemp -d)
STRACE_PID=""
cleanup() {
	if [ -n "$STRACE_PID" ] && kill -0 "$STRACE_PID" 2>/dev/null; then
		kill "$STRACE_PID" 2>/dev/null || true
		wait "$STRACE_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# A one-token SoftHSM2 store.
mkdir -p "$TMP/tokens" "$TMP/state"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$TMP" >"$TMP/softhsm2.conf"
SOFTHSM2_CONF="$TMP/softhsm2.conf" softhsm2-util --init-token --free --label sandbox --so-pin 5678 --pin 1234 >/dev/null
SERIAL=$(SOFTHSM2_CONF="$TMP/softhsm2.conf" softhsm2-util --show-slots | awk '/Serial number:/ && $3 != "" { print $3; exit }')
[ -n "$SERIAL" ] || die "could not create a SoftHSM2 token"
install -m 0600 /dev/null "$TMP/pin"
printf '1234' >"$TMP/pin"
PORT=$((20000 + RANDOM % 20000))
cat >"$TMP/config.yml" <<EOF
state_dir: $TMP/state
listen: 127.0.0.1:$PORT
poll_interval: 1s
selftest_interval: 1s
reinit_interval: 2s
probe_timeout: 5s
modules:
  - name: softhsm
    library: $LIB
    env: {SOFTHSM2_CONF: "$TMP/softhsm2.conf"}
devices:
  - name: hsm-a
    serial: "$SERIAL"
    module: softhsm
    environment: production
    pin_file: $TMP/pin
EOF

# Run it as the service would: an unprivileged user (root takes paths, such
# as SQLite's fchown of its -wal file, that the service never does) and
# systemd's default PATH rather than this shell's.
chmod 0755 "$TMP"
install -m 0755 "$BIN" "$TMP/hsm-agent"
chmod 0644 "$TMP/config.yml" "$TMP/softhsm2.conf"
chown -R nobody: "$TMP/tokens" "$TMP/state" "$TMP/pin"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	strace -u nobody -f -qq -o "$TMP/trace" "$TMP/hsm-agent" run --config "$TMP/config.yml" >"$TMP/agent.log" 2>&1 &
STRACE_PID=$!

metrics=""
for _ in $(seq 1 60); do
	metrics=$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true)
	if printf '%s\n' "$metrics" | grep -q '^hsm_check_success{check="login_sign",device="hsm-a"} 1$'; then
		break
	fi
	kill -0 "$STRACE_PID" 2>/dev/null || break
	sleep 0.5
done
sleep 2.5 # past one reinit_interval: a fresh worker replaces the warm one
AGENT_PID=$(awk 'NR == 1 { print $1 }' "$TMP/trace")
[ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" 2>/dev/null || true
wait "$STRACE_PID" || true
STRACE_PID=""

if printf '%s\n' "$metrics" | grep -q '^hsm_up{device="hsm-a",serial="'"$SERIAL"'"} 1$' &&
	printf '%s\n' "$metrics" | grep -q '^hsm_check_success{check="login_sign",device="hsm-a"} 1$'; then
	pass "agent under strace: hsm-a up, login_sign succeeded"
else
	fail "agent under strace never reported hsm-a up with login_sign 1; agent log:"
	sed 's/^/     /' "$TMP/agent.log" >&2
fi
workers=$(grep -cE 'execve\("[^"]*", \["[^"]*", "probe-worker"' "$TMP/trace" || true)
if [ "$workers" -ge 2 ]; then
	pass "probe workers spawned from the same binary: $workers"
else
	fail "expected at least 2 probe-worker processes (probe and selftest), saw $workers"
fi

# Expand the unit's SystemCallFilter= lines: allow-list lines first, then ~ lines.
systemd-analyze syscall-filter --no-pager 2>/dev/null >"$TMP/groups"
mapfile -t filters < <(sed -n 's/^SystemCallFilter=//p' "$UNIT")
allow=() deny=()
for f in "${filters[@]}"; do
	case "$f" in
	"~"*) read -ra w <<<"${f#\~}"; deny+=("${w[@]}") ;;
	*)
		[ ${#deny[@]} -eq 0 ] || die "$UNIT: an allow-list SystemCallFilter= after a ~ line is not supported by this check"
		read -ra w <<<"$f"
		allow+=("${w[@]}")
		;;
	esac
done
[ ${#allow[@]} -gt 0 ] || die "$UNIT has no allow-list SystemCallFilter= line"
expand() { # expand ITEM...: syscall names, groups resolved recursively
	awk -v want="$*" '
		/^@/ { g = $1; next }
		/^[[:space:]]*#/ || NF == 0 { next }
		g != "" { members[g] = members[g] " " $1 }
		function walk(x,   n, i, parts) {
			if (x !~ /^@/) { out[x] = 1; return }
			if (seen[x]++) return
			n = split(members[x], parts, " ")
			for (i = 1; i <= n; i++) walk(parts[i])
		}
		END {
			n = split(want, items, " ")
			for (i = 1; i <= n; i++) walk(items[i])
			for (s in out) print s
		}' "$TMP/groups" | sort -u
}
expand "${allow[@]}" >"$TMP/allowed.all"
expand "${deny[@]}" >"$TMP/denied"
comm -23 "$TMP/allowed.all" "$TMP/denied" >"$TMP/allowed"
[ "$(wc -l <"$TMP/allowed")" -gt 100 ] || die "could not expand SystemCallFilter= (got $(wc -l <"$TMP/allowed") system calls)"
sed -E 's/^[0-9]+ +//' "$TMP/trace" | grep -oE '^[a-z0-9_]+\(' | tr -d '(' | sort -u >"$TMP/used"
blocked=$(comm -23 "$TMP/used" "$TMP/allowed" | tr '\n' ' ')
if [ -z "$blocked" ]; then
	pass "SystemCallFilter: all $(wc -l <"$TMP/used") system calls used are allowed"
else
	fail "SystemCallFilter: the service used system calls the unit blocks: $blocked"
fi

if grep -q '^MemoryDenyWriteExecute=yes$' "$UNIT"; then
	wx=$(grep -E '(mmap|mprotect|pkey_mprotect)\(.*PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE' "$TMP/trace" | head -n 3 || true)
	mpx=$(grep -E '(mprotect|pkey_mprotect)\([^)]*PROT_EXEC' "$TMP/trace" | head -n 3 || true)
	if [ -z "$wx$mpx" ]; then
		pass "MemoryDenyWriteExecute: no writable+executable mapping, no mprotect(PROT_EXEC)"
	else
		fail "MemoryDenyWriteExecute would kill the service: $wx $mpx"
	fi
fi

families=$(sed -n 's/^RestrictAddressFamilies=//p' "$UNIT")
used_families=$(grep -oE 'socket\(AF_[A-Z0-9]+' "$TMP/trace" | sed 's/socket(//' | sort -u | tr '\n' ' ')
bad=""
for f in $used_families; do
	case " $families " in *" $f "*) ;; *) bad="$bad $f" ;; esac
done
if [ -z "$bad" ]; then
	pass "RestrictAddressFamilies=$families: sockets used: ${used_families:-none}"
else
	fail "RestrictAddressFamilies=$families: the service opened$bad sockets"
fi

writes=$(grep -E '(open|openat|creat)\(' "$TMP/trace" | grep -E 'O_WRONLY|O_RDWR|O_CREAT|creat\(' |
	grep -v ' = -1 ' | grep -oE '"[^"]+"' | tr -d '"' | sort -u |
	grep -vE "^($TMP/state|$TMP/tokens)(/|\$)|^/dev/(null|tty)\$" || true)
if [ -z "$writes" ]; then
	pass "ProtectSystem=strict: writes only under state_dir and the token store"
else
	fail "ProtectSystem=strict would refuse these writes: $(printf '%s ' $writes)"
fi
home=$(grep -E '(open|openat|stat|newfstatat|access)\(' "$TMP/trace" | grep -oE '"/(home|root|run/user)(/[^"]*)?"' | sort -u | tr '\n' ' ' || true)
if [ -z "$home" ]; then
	pass "ProtectHome=yes: nothing under /home, /root or /run/user touched"
else
	fail "ProtectHome=yes hides paths the service used: $home"
fi

finish check-sandbox
