#!/usr/bin/env bash
# Installs the system packages hsm-agent's demo and tests need, from Debian's
# packages, when they are missing. Runs apt-get as root (or through sudo).
set -euo pipefail

# command or file that proves a package is installed -> package name
declare -A need=(
  [/usr/lib/softhsm/libsofthsm2.so]=softhsm2
  [softhsm2-util]=softhsm2
  [pkcs11-tool]=opensc
  [promtool]=prometheus
  [gcc]=gcc
  [rpmbuild]=rpm
  [dpkg-deb]=dpkg
  [systemd-analyze]=systemd
  [strace]=strace
  [curl]=curl
  # Request Tracker 5 for the rt desk's real-RT test (rma/desk/rt)
  [/usr/share/request-tracker5/libexec/rt-server]=rt5-standalone
  [/usr/share/request-tracker5/lib/RT.pm]=request-tracker5
  [/usr/share/doc/rt5-db-sqlite]=rt5-db-sqlite
  [prometheus-alertmanager]=prometheus-alertmanager
)
# --demo: only what `make demo` needs (SoftHSM2 and the C compiler for the
# fault module), not the tests' help desk, Alertmanager and packaging tools.
if [[ "${1:-}" == "--demo" ]]; then
  declare -A need=(
    [/usr/lib/softhsm/libsofthsm2.so]=softhsm2
    [softhsm2-util]=softhsm2
    [gcc]=gcc
  )
fi
missing=()
for probe in "${!need[@]}"; do
  if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("${need[$probe]}")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The rt desk's test starts rt-server itself; the package's enabled unit (wanting mysql,
# postgresql, apache2) would make `systemd-analyze verify` of hsm-agent's unit warn.
if [[ " ${missing[*]} " == *" request-tracker5 "* ]]; then
  "${SUDO[@]}" systemctl disable request-tracker5.service >/dev/null 2>&1 || true
fi
