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
  [prometheus-alertmanager]=prometheus-alertmanager
)
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
"${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
