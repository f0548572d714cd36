#!/usr/bin/env bash
# bench-flood.sh: the failover drill's performance numbers, as reported in
# docs/PERFORMANCE.md ("## Failover"):
#   - db.flood's acknowledged writes per second against sysbench's
#     oltp_insert at 1, 5 and 16 writers, on the lab's mariadb-pair primary
#     (semi-sync, synced logs), in alternating rounds;
#   - the op log of 1,000,000 writes: peak memory while writing and judging;
#   - the write-downtime resolution against a known freeze of the primary.
# OPSDRILL_BENCH_ROUNDS (default 3) rounds of OPSDRILL_BENCH_SECONDS
# (default 10) per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v sysbench >/dev/null || scripts/install-deps.sh
rounds=${OPSDRILL_BENCH_ROUNDS:-3}
export OPSDRILL_BENCH_SECONDS=${OPSDRILL_BENCH_SECONDS:-10}
export TESTCONTAINERS_RYUK_DISABLED=true
go=${GO:-go}

"$go" test -run '^$' -bench 'BenchmarkOpLogMillion|BenchmarkAppendOp' -benchmem ./steps/db
"$go" test -run '^$' -bench 'BenchmarkFloodVsSysbench|BenchmarkDowntimeResolution' -benchtime "${rounds}x" -timeout 60m -v ./steps/db |
	grep -E '^(Benchmark|ok|FAIL|PASS|---)|round [0-9]+:|frozen '
