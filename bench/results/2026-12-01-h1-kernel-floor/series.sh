#!/usr/bin/env bash
# Where a keep-alive HTTP/1.1 request's server CPU goes, kernel against user space, for nginx,
# HAProxy and Portcullis, in the two layouts a two-core machine allows: the origin on the
# server's core (run.sh's default) and the origin on the load generator's core. Three series
# of each, keep-alive rows only, uncapped. Needs:
#   cargo build --release -p portcullis -p portcullis-loadtest
#   (cd bench/compare/crypto-bound && cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
OUT=${OUT:-bench/results/2026-12-01-h1-kernel-floor}
run() { # NAME ENV...: one run.sh series into $OUT/NAME
  local name=$1
  shift
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg))"
  env SKIP_BUILD=1 VARIANTS=ecdsa SERVERS="nginx haproxy portcullis" TESTS=keepalive \
    OUT_DIR="$OUT/$name" "$@" bench/compare/run.sh 2>&1 | grep -E "keepalive:"
}
for i in 1 2 3; do
  run "series-$i/origin-on-server-core"
  run "series-$i/origin-on-client-core" ORIGIN_CPU=1
done
