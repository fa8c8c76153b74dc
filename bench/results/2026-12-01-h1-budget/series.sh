#!/usr/bin/env bash
# The HTTP/1.1 keep-alive comparison at an equal CPU budget (issue 12), as run on 2026-12-01:
# three series, each with the servers uncapped (the origin shares the server's core, as in
# every earlier run) and capped at half a core (cgroup quota), then one capped series with
# 64 keep-alive connections. Needs root (cgroup) and the release binaries:
#   cargo build --release -p portcullis -p portcullis-loadtest
#   (cd bench/compare/crypto-bound && cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
OUT=${OUT:-bench/results/2026-12-01-h1-budget}
run() { # NAME ENV...: one run.sh series into $OUT/NAME, with its load average
  local name=$1
  shift
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg))"
  env SKIP_BUILD=1 VARIANTS=ecdsa TESTS=keepalive SERVERS="nginx haproxy portcullis" \
    OUT_DIR="$OUT/$name" "$@" bench/compare/run.sh 2>&1 | grep -E "keepalive:|capped"
}
for i in 1 2 3; do
  run "series-$i/uncapped"
  run "series-$i/capped-50" SERVER_CPU_QUOTA=50
done
run "conns-64/capped-50" SERVER_CPU_QUOTA=50 KA_CONNS=64
