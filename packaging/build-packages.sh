#!/usr/bin/env bash
# Builds hsm-agent's .deb (dpkg-deb) and .rpm (rpmbuild) from a built binary.
#
# Usage: packaging/build-packages.sh VERSION BINARY OUTDIR
#   VERSION  1.2.0, v1.2.0, 1.3.0-rc1 or `git describe` output (see package_version
#            below: pre-releases sort before the release, untagged builds as 0.0.0~...)
#   BINARY   the hsm-agent binary (go build -o bin/hsm-agent ./agent/cmd/hsm-agent)
#   OUTDIR   where hsm-agent_<version>_<arch>.deb and hsm-agent-<version>-1.<arch>.rpm go
# Environment: HSM_AGENT_PACKAGES="deb rpm" (default both), HSM_AGENT_LICENSE
# (rpm License: tag, default "Proprietary"), HSM_AGENT_MAINTAINER.
# Needs: dpkg-deb (dpkg), rpmbuild (Debian package rpm); objdump (binutils) is
# used for the libc6 version the binary needs.
#
# Layout (both packages; the unit goes to /lib/systemd/system in the .deb and
# /usr/lib/systemd/system in the .rpm):
#   /usr/bin/hsm-agent                                 0755 root
#   .../systemd/system/hsm-agent.service               0644 root
#   /usr/lib/sysusers.d/hsm-agent.conf                 0644 root
#   /usr/lib/tmpfiles.d/hsm-agent.conf                 0644 root
#   /usr/share/hsm-agent/50-credentials-compat.conf    0644 root, copied by the maintainer
#                       scripts to /etc/systemd/system/hsm-agent.service.d/ on systemd < 251
#   /etc/hsm-agent/config.yml                          0644 root, conffile / %config(noreplace)
#   /etc/hsm-agent/credentials{,/pins,/desks}/         0700 hsm-agent
#   /var/lib/hsm-agent/                                0700 hsm-agent
#   /usr/share/doc/hsm-agent/                          drop-in examples, Prometheus rules,
#                                                      dashboard, runbook, scrape config
set -euo pipefail

die() { printf 'build-packages: %s\n' "$*" >&2; exit 1; }

# package_version VERSION: a version dpkg and rpm both accept and order right.
#   1.2.0, v1.2.0            -> 1.2.0
#   1.3.0-rc1                -> 1.3.0~rc1          (pre-release: before 1.3.0)
#   v1.2.0-4-gabc1234[-dirty] -> 1.2.0+git4.gabc1234[.dirty] (git describe: after 1.2.0)
#   dev, abc1234-dirty       -> 0.0.0~dev, 0.0.0~abc1234.dirty (untagged builds)
package_version() {
	local v=${1#v}
	if [[ $v =~ ^([0-9]+(\.[0-9]+)*)-([0-9]+)-(g[0-9a-f]+)(-dirty)?$ ]]; then
		v="${BASH_REMATCH[1]}+git${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
		[ -z "${BASH_REMATCH[5]}" ] || v="$v.dirty"
	elif [[ $v =~ ^[0-9]+(\.[0-9]+)*([-~+][0-9A-Za-z.]+)?$ ]]; then
		v=${v/-/\~}
	elif [[ $1 =~ ^[0-9A-Za-z][0-9A-Za-z._-]*$ ]]; then
		v="0.0.0~$(printf '%s' "$1" | tr -c '0-9A-Za-z.\n' '.')"
	else
		return 1
	fi
	printf '%s\n' "$v"
}

if [ "${1:-}" = "--print-version" ] && [ $# -eq 2 ]; then
	package_version "$2" || die "VERSION '$2' cannot be made a package version"
	exit 0
fi
[ $# -eq 3 ] || die "usage: $0 VERSION BINARY OUTDIR   (or: $0 --print-version VERSION)"
VERSION_IN=$1 BINARY=$2 OUTDIR=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PACKAGES=${HSM_AGENT_PACKAGES:-deb rpm}
LICENSE=${HSM_AGENT_LICENSE:-Proprietary}
MAINTAINER=${HSM_AGENT_MAINTAINER:-hsm-agent maintainers <hsm-agent@example.invalid>}

VERSION=$(package_version "$VERSION_IN") ||
	die "VERSION '$VERSION_IN' cannot be made a package version (use 1.2.0, v1.2.0, 1.3.0-rc1 or git describe output)"

[ -f "$BINARY" ] && [ -x "$BINARY" ] || die "BINARY '$BINARY' is not an executable file (build it: go build -o bin/hsm-agent ./agent/cmd/hsm-agent)"
[ "$(head -c 4 "$BINARY" | od -An -c | tr -d ' ')" = '177ELF' ] || die "BINARY '$BINARY' is not an ELF executable"

# Architecture from the ELF header (e_machine), not from the build host.
machine=$(od -An -tu2 -j18 -N2 "$BINARY" | tr -d ' ')
case "$machine" in
62) DEB_ARCH=amd64 RPM_ARCH=x86_64 ;;
183) DEB_ARCH=arm64 RPM_ARCH=aarch64 ;;
40) DEB_ARCH=armhf RPM_ARCH=armv7hl ;;
243) DEB_ARCH=riscv64 RPM_ARCH=riscv64 ;;
*) die "BINARY '$BINARY': unsupported ELF machine $machine" ;;
esac

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# stage ROOTDIR UNITDIR: the file tree both packages share.
stage() {
	local r=$1 unitdir=$2
	install -D -m 0755 "$BINARY" "$r/usr/bin/hsm-agent"
	install -D -m 0644 "$ROOT/systemd/hsm-agent.service" "$r$unitdir/hsm-agent.service"
	install -D -m 0644 "$ROOT/systemd/sysusers.d/hsm-agent.conf" "$r/usr/lib/sysusers.d/hsm-agent.conf"
	install -D -m 0644 "$ROOT/systemd/tmpfiles.d/hsm-agent.conf" "$r/usr/lib/tmpfiles.d/hsm-agent.conf"
	install -D -m 0644 "$ROOT/systemd/compat/50-credentials-compat.conf" "$r/usr/share/hsm-agent/50-credentials-compat.conf"
	install -D -m 0644 "$HERE/config.yml" "$r/etc/hsm-agent/config.yml"
	install -d -m 0700 "$r/etc/hsm-agent/credentials" "$r/etc/hsm-agent/credentials/pins" \
		"$r/etc/hsm-agent/credentials/desks" "$r/var/lib/hsm-agent"
	local doc=$r/usr/share/doc/hsm-agent
	install -d -m 0755 "$doc/examples/hsm-agent.service.d" "$doc/prometheus"
	install -m 0644 "$ROOT"/systemd/examples/hsm-agent.service.d/*.conf "$doc/examples/hsm-agent.service.d/"
	install -m 0644 "$ROOT/systemd/README.md" "$doc/systemd.md"
	install -m 0644 "$HERE"/prometheus/*.yml "$HERE/prometheus/grafana-dashboard.json" \
		"$HERE/prometheus/RUNBOOK.md" "$doc/prometheus/"
	if [ -f "$ROOT/README.md" ]; then
		install -m 0644 "$ROOT/README.md" "$doc/README.md"
	fi
	chmod 0755 "$r/etc/hsm-agent"
}

DESCRIPTION_SHORT="HSM health agent: PKCS#11 health checks, Prometheus metrics, support cases"
DESCRIPTION_LONG="hsm-agent runs next to a site's HSMs, probes every PKCS#11 module in an
isolated child process, classifies the health of each HSM, exports it as
Prometheus metrics and opens support cases for confirmed faults. The package
installs a hardened systemd unit, enabled but not started: edit
/etc/hsm-agent/config.yml, then systemctl start hsm-agent."

build_deb() {
	local r=$WORK/deb
	stage "$r" /lib/systemd/system
	install -d -m 0755 "$r/DEBIAN"
	install -m 0755 "$HERE/deb/postinst" "$HERE/deb/prerm" "$HERE/deb/postrm" "$r/DEBIAN/"
	printf '/etc/hsm-agent/config.yml\n' >"$r/DEBIAN/conffiles"
	local libc=libc6
	if command -v objdump >/dev/null 2>&1; then
		local glibc
		glibc=$(objdump -T "$BINARY" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1 || true)
		if [ -n "$glibc" ]; then libc="libc6 (>= $glibc)"; fi
	fi
	local size
	size=$(du -sk --exclude=DEBIAN "$r" | cut -f1)
	{
		printf 'Package: hsm-agent\n'
		printf 'Version: %s\n' "$VERSION"
		printf 'Architecture: %s\n' "$DEB_ARCH"
		printf 'Maintainer: %s\n' "$MAINTAINER"
		printf 'Installed-Size: %s\n' "$size"
		printf 'Depends: %s, adduser | systemd\n' "$libc"
		printf 'Suggests: softhsm2, opensc\n'
		printf 'Section: admin\n'
		printf 'Priority: optional\n'
		printf 'Homepage: https://github.com/hsm-agent/hsm-agent\n'
		printf 'Description: %s\n' "$DESCRIPTION_SHORT"
		printf '%s\n' "$DESCRIPTION_LONG" | sed 's/^/ /'
	} >"$r/DEBIAN/control"
	local out="$OUTDIR/hsm-agent_${VERSION}_${DEB_ARCH}.deb"
	dpkg-deb --root-owner-group -Zgzip -z9 --build "$r" "$out" >/dev/null
	printf '%s\n' "$out"
}

build_rpm() {
	local top=$WORK/rpm
	local stagedir=$top/stage
	mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
	stage "$stagedir" /usr/lib/systemd/system
	local sysusers_line
	sysusers_line=$(grep -v '^[[:space:]]*\(#\|$\)' "$ROOT/systemd/sysusers.d/hsm-agent.conf")
	[ "$(printf '%s\n' "$sysusers_line" | wc -l)" -eq 1 ] || die "systemd/sysusers.d/hsm-agent.conf must hold exactly one entry"
	case "$sysusers_line" in *"'"* | *'%'*) die "systemd/sysusers.d/hsm-agent.conf: no ' or % allowed (rpm scriptlet quoting)" ;; esac
	local spec=$top/SPECS/hsm-agent.spec
	{
		cat <<EOF
%global debug_package %{nil}
%global __os_install_post %{nil}
%global _build_id_links none

Name:           hsm-agent
Version:        $VERSION
Release:        1
Summary:        $DESCRIPTION_SHORT
License:        $LICENSE
URL:            https://github.com/hsm-agent/hsm-agent
Requires(pre):  /usr/sbin/useradd, /usr/sbin/groupadd, /usr/bin/getent
Suggests:       softhsm, opensc

%description
$DESCRIPTION_LONG

%install
cp -a $stagedir/. %{buildroot}/

%files
%attr(0755,root,root) /usr/bin/hsm-agent
%attr(0644,root,root) /usr/lib/systemd/system/hsm-agent.service
%attr(0644,root,root) /usr/lib/sysusers.d/hsm-agent.conf
%attr(0644,root,root) /usr/lib/tmpfiles.d/hsm-agent.conf
%attr(0644,root,root) /usr/share/hsm-agent/50-credentials-compat.conf
%dir %attr(0755,root,root) /etc/hsm-agent
%config(noreplace) %attr(0644,root,root) /etc/hsm-agent/config.yml
%dir %attr(0700,hsm-agent,hsm-agent) /etc/hsm-agent/credentials
%dir %attr(0700,hsm-agent,hsm-agent) /etc/hsm-agent/credentials/pins
%dir %attr(0700,hsm-agent,hsm-agent) /etc/hsm-agent/credentials/desks
%dir %attr(0700,hsm-agent,hsm-agent) /var/lib/hsm-agent
%doc %attr(-,root,root) /usr/share/doc/hsm-agent

EOF
		printf '%%pre\n'
		sed "s|@SYSUSERS_LINE@|$sysusers_line|" "$HERE/rpm/pre.sh"
		printf '\n%%post\n'
		cat "$HERE/rpm/post.sh"
		printf '\n%%preun\n'
		cat "$HERE/rpm/preun.sh"
		printf '\n%%postun\n'
		cat "$HERE/rpm/postun.sh"
	} >"$spec"
	grep -q "@SYSUSERS_LINE@" "$spec" && die "could not insert the sysusers entry into %pre"
	local log=$WORK/rpmbuild.log
	if ! rpmbuild -bb --nodeps --target "$RPM_ARCH" \
		--define "_topdir $top" --define "_tmppath $top/tmp" \
		--define "_binary_payload w9.gzdio" \
		"$spec" >"$log" 2>&1; then
		cat "$log" >&2
		die "rpmbuild failed"
	fi
	local built
	built=$(find "$top/RPMS" -name "hsm-agent-*.rpm" | head -n 1)
	[ -n "$built" ] || { cat "$log" >&2; die "rpmbuild produced no package"; }
	local out="$OUTDIR/$(basename "$built")"
	cp "$built" "$out"
	printf '%s\n' "$out"
}

for p in $PACKAGES; do
	case "$p" in
	deb)
		command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian package dpkg)"
		build_deb
		;;
	rpm)
		command -v rpmbuild >/dev/null 2>&1 || die "rpmbuild not found: apt-get install -y rpm"
		build_rpm
		;;
	*) die "HSM_AGENT_PACKAGES: unknown package type '$p' (deb, rpm)" ;;
	esac
done
