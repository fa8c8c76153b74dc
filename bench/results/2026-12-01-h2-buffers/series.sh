#!/usr/bin/env bash
# The request-path rows after the buffer-pool change (a full buffer is handed out full again;
# no body buffer without a body): three series, every server uncapped, keep-alive and HTTP/2
# saturation and both fixed-rate rows (three runs each), as the uncapped half of
# bench/results/2026-12-01-issue12-final/series.sh. Needs:
#   cargo build --release -p portcullis -p portcullis-loadtest
#   (cd bench/compare/crypto-bound && cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
OUT=${OUT:-bench/results/2026-12-01-h2-buffers}
for i in 1 2 3; do
  echo "== series-$i ($(cut -d' ' -f1-3 /proc/loadavg))"
  env SKIP_BUILD=1 VARIANTS=ecdsa SERVERS="nginx haproxy portcullis" TESTS="keepalive rate h2 h2rate" \
    RATE_REPEATS=3 OUT_DIR="$OUT/series-$i" bench/compare/run.sh 2>&1 |
    grep -E "keepalive:|\.h2:|rate[-0-9]*:|latency runs"
done
