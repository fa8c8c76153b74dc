#!/usr/bin/env bash
# Three series of the request-path comparison, each after waiting (at most 10 min for the
# first, 5 for the others) for the
# shared machine to be quiet (1-min load average < 1.0); the load is recorded per series.
set -u
cd /work/wt12
export CARGO_TARGET_DIR=$HOME/.cache/pt-wt12
OUT=bench/results/2026-12-01-request-path-final
mkdir -p "$OUT"
for n in 1 2 3; do
  waited=0
  limit=$(( n == 1 ? 600 : 300 ))
  while (( waited < limit )); do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$l1" 'BEGIN{exit !(l < 1.0)}' && break
    sleep 15; waited=$((waited + 15))
  done
  echo "series $n: start $(date -u +%H:%M:%S) after waiting ${waited}s; loadavg $(cat /proc/loadavg)" >> "$OUT/load.txt"
  top -b -n 1 | head -15 > "$OUT/top-series-$n-start.txt"
  SKIP_BUILD=1 SERVERS="nginx haproxy portcullis" VARIANTS=ecdsa TESTS="keepalive rate h2 h2rate" \
    RATE_REPEATS=3 OUT_DIR="$OUT/series-$n" bench/compare/run.sh > "$OUT/series-$n.log" 2>&1
  echo "series $n: exit $? end $(date -u +%H:%M:%S); loadavg $(cat /proc/loadavg)" >> "$OUT/load.txt"
done
