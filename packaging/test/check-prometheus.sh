#!/usr/bin/env bash
# Checks the Prometheus assets in packaging/prometheus/ with the real promtool
# and the Go checks in packaging/promcheck:
#   promtool check rules   hsm-agent.rules.yml, hsm-agent-cases.rules.yml
#   promtool test rules    tests/*.test.yml (every alert fires and stays silent)
#   promtool check config  scrape-config.yml (with the rules it loads)
#   go test ./packaging/promcheck ./systemd   (metric names used by rules and
#     dashboard are in metric-names*.txt, which matches the Go code; runbook
#     anchors; dashboard structure; dashboard queries parse with promtool)
# Usage: packaging/test/check-prometheus.sh
set -euo pipefail
# shellcheck source=packaging/test/lib.sh
. "$(dirname "$0")/lib.sh"

need promtool "install Prometheus' promtool (Debian: apt-get install -y prometheus)"
need go "install Go (see go.mod)"
P="$REPO_ROOT/packaging/prometheus"

run() { # run DESCRIPTION CMD...: PASS/FAIL with the command's output on failure
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		pass "$what"
	else
		fail "$what:"
		printf '%s\n' "$out" | sed 's/^/     /' >&2
	fi
}

for f in hsm-agent.rules.yml hsm-agent-cases.rules.yml; do
	run "promtool check rules $f" promtool check rules "$P/$f"
done
for f in "$P"/tests/*.test.yml; do
	run "promtool test rules tests/$(basename "$f")" promtool test rules "$f"
done
run "promtool check config scrape-config.yml" promtool check config "$P/scrape-config.yml"
run "go test ./packaging/promcheck ./systemd" bash -c "cd '$REPO_ROOT' && go test -count=1 ./packaging/promcheck ./systemd"

finish check-prometheus
