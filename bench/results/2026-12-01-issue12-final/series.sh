#!/usr/bin/env bash
# Issue 12's request-path figures at the head of 2026-12-01's second session, three series.
# Each series: every row uncapped (keep-alive and HTTP/2 saturation, fixed-rate p99 for both
# protocols, three runs each; the layout of every earlier run), then the saturation rows
# again with every server capped at half a core (SERVER_CPU_QUOTA=50: the servers, not the
# origin sharing their core, saturate; see bench/compare/README.md "Equal CPU budget").
# Fixed-rate runs are never capped: a throttled server's 50 ms pauses would be the p99.
# Needs root (cgroup) and:
#   cargo build --release -p portcullis -p portcullis-loadtest
#   (cd bench/compare/crypto-bound && cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
OUT=${OUT:-bench/results/2026-12-01-issue12-final}
run() { # NAME ENV...: one run.sh series into $OUT/NAME
  local name=$1
  shift
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg))"
  env SKIP_BUILD=1 VARIANTS=ecdsa SERVERS="nginx haproxy portcullis" OUT_DIR="$OUT/$name" "$@" \
    bench/compare/run.sh 2>&1 | grep -E "keepalive:|\.h2:|rate[-0-9]*:|capped|latency runs"
}
for i in 1 2 3; do
  run "series-$i/uncapped" TESTS="keepalive rate h2 h2rate" RATE_REPEATS=3
  run "series-$i/capped-50" TESTS="keepalive h2" SERVER_CPU_QUOTA=50
done
