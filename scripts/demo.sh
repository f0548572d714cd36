#!/usr/bin/env bash
# demo.sh: bring the local lab up, run every scenario in scenarios/ against
# it, tear it down (also on Ctrl-C), and say where the report is.
set -uo pipefail
cd "$(dirname "$0")/.."

bin=bin/opsdrill
out=${OPSDRILL_DEMO_OUT:-out}
state=.lab

down() {
	echo "==> tearing the lab down"
	"$bin" lab down --state-dir "$state" >/dev/null 2>&1 || "$bin" lab down --state-dir "$state"
}
trap 'down; exit 130' INT TERM

echo "==> bringing the lab up"
if ! "$bin" lab up --state-dir "$state"; then
	down
	echo "demo: the lab did not come up (see above)" >&2
	exit 2
fi
trap 'down' EXIT
trap 'exit 130' INT TERM

# The lab is reached the way real hosts are: over SSH, through the
# ssh_config `lab up` wrote (its vars-ssh.yaml names every lab host as
# ssh://NAME?sudo=true instead of lab:ID/NAME).
echo "==> running scenarios/ against the lab, over SSH"
"$bin" run --report-dir "$out" --ssh-config "$state/ssh_config" \
	--vars scenarios/targets/lab.yaml --vars "$state/vars.yaml" --vars "$state/vars-ssh.yaml" scenarios/
code=$?

report="$out/report.html"
[ -f "$report" ] || report="$out/report.json"
case $code in
	0) verdict="PASSED: every drill passed" ;;
	1) verdict="FAILED: at least one drill failed" ;;
	130) verdict="INTERRUPTED: cleanup ran" ;;
	*) verdict="ERROR: bad input (exit $code)" ;;
esac
echo
echo "report: $(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
echo "verdict: $verdict"
exit $code
