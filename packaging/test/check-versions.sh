#!/usr/bin/env bash
# Checks how build-packages.sh turns a VERSION (release tag, pre-release,
# `git describe` output, untagged build) into a package version, and that
# dpkg and rpm order the results the same, right way.
# Usage: packaging/test/check-versions.sh
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"
need dpkg "this test needs dpkg"
need rpm "apt-get install -y rpm"
B="$REPO_ROOT/packaging/build-packages.sh"

while read -r in want; do
	got=$("$B" --print-version "$in" 2>&1 || true)
	[ "$got" = "$want" ] && pass "version $in -> $want" || fail "version $in -> '$got', want '$want'"
done <<'EOF2'
1.2.0 1.2.0
v1.2.0 1.2.0
1.3.0-rc1 1.3.0~rc1
v1.2.0-4-gabc1234 1.2.0+git4.gabc1234
v1.2.0-4-gabc1234-dirty 1.2.0+git4.gabc1234.dirty
dev 0.0.0~dev
c7f8c5d-dirty 0.0.0~c7f8c5d.dirty
EOF2
for bad in "" "1.0 beta" "-rc1" "1.0/x"; do
	if "$B" --print-version "$bad" >/dev/null 2>&1; then fail "version '$bad' was accepted"; else pass "version '$bad' refused"; fi
done

# Each version must sort strictly before the next, in dpkg and in rpm.
order=(0.0.0~dev 1.2.0~rc1 1.2.0 1.2.0+git4.gabc1234 1.2.0+git4.gabc1234.dirty 1.2.1~rc1 1.2.1)
for ((i = 0; i + 1 < ${#order[@]}; i++)); do
	a=${order[i]} b=${order[i + 1]}
	dpkg --compare-versions "$a" lt "$b" && pass "dpkg: $a < $b" || fail "dpkg: $a is not < $b"
	r=$(rpm --eval "%{lua: print(rpm.vercmp(\"$a\", \"$b\"))}")
	[ "$r" = "-1" ] && pass "rpm: $a < $b" || fail "rpm: vercmp($a, $b) = $r, want -1"
done
finish check-versions
