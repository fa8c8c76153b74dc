#!/usr/bin/env bash
# A/B of Portcullis builds on the same keep-alive load: alternates the builds ROUNDS times and
# prints, per run, requests/s and the server's CPU time per request (user + system, from
# /proc; less sensitive to a noisy neighbour than throughput), then the median per build.
#
#   bench/compare/ab.sh NAME=/path/to/portcullis NAME2=/path/to/other-portcullis ...
#
# Environment (optional): ROUNDS=5, SECS=5, KA_CONNS=16, SERVER_CPU=0, CLIENT_CPU=1,
# ORIGIN_CPU (default SERVER_CPU, as in run.sh), BENCH_NICE=-15 (as run.sh), LOADTEST=path to portcullis-loadtest (default: $CARGO_TARGET_DIR/release/portcullis-loadtest).
# Needs nginx (the origin), openssl and taskset, like run.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
KA_CONNS=${KA_CONNS:-16}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-$SERVER_CPU}
BENCH_NICE=${BENCH_NICE:--15}
LOADTEST=${LOADTEST:-${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}/release/portcullis-loadtest}
(($# >= 2)) || { echo "usage: $0 NAME=BINARY NAME=BINARY [...]" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT: up to 10 s
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

"$HERE/gen_pki.sh" "$WORK/pki" ecdsa 4
ORIGIN_PORT=$(free_port)
mkdir -p "$WORK/origin"
cat > "$WORK/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:$ORIGIN_PORT reuseport backlog=4096;
    location / { default_type text/plain; return 200 "hello from the origin\n"; }
  }
}
EOF
nice -n "$BENCH_NICE" taskset -c "$ORIGIN_CPU" nginx -p "$WORK/origin/" -c "$WORK/origin/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT" || { echo "origin did not start" >&2; exit 1; }

PORT=$(free_port)
cat > "$WORK/portcullis.toml" <<EOF
[server]
listen = ["127.0.0.1:$PORT"]
workers = 1
cpu_affinity = [$SERVER_CPU]
[server.timeouts]
header_read = "600s"
idle_keepalive = "600s"
[[site]]
name = "bench"
server_names = ["localhost"]
certificate = "$WORK/pki/server.pem"
private_key = "$WORK/pki/server.key"
origin = "http://127.0.0.1:$ORIGIN_PORT"
[site.mtls]
mode = "required"
trust_store = "$WORK/pki/trust.pem"
forward_headers = ["serial-number", "subject", "issuer", "present"]
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_one() { # NAME BINARY -> "name reqs_per_s cpu_us_per_req"
  local name=$1 bin=$2
  nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$bin" run --config "$WORK/portcullis.toml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  wait_port "$PORT" || { echo "$name did not start: $(cat "$WORK/$name.err")" >&2; exit 1; }
  local before
  before=$(cpu_ticks "$pid")
  nice -n "$BENCH_NICE" taskset -c "$CLIENT_CPU" "$LOADTEST" keepalive --target "127.0.0.1:$PORT" --ca "$WORK/pki/root-ca.pem" \
    --certs "$WORK/pki/certs" -t 2 -c "$KA_CONNS" -r 100000000 -d "$SECS" --json --no-progress \
    >"$WORK/$name.json" 2>/dev/null
  local after
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$WORK/$name.json" "$before" "$after" "$(getconf CLK_TCK)" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks = int(sys.argv[3]) - int(sys.argv[2])
hz = int(sys.argv[4])
ops = r["completed"]
rate = r["ops_per_sec"]
errors = sum(e["count"] for e in r["errors"] if not e["expected"])
cpu_us = ticks / hz * 1e6 / max(ops, 1)
print(f"{sys.argv[5]} {rate:.0f} {cpu_us:.1f} {errors}")
PY
}

RESULTS=$WORK/results.txt
for round in $(seq "$ROUNDS"); do
  for pair in "$@"; do
    line=$(run_one "${pair%%=*}" "${pair#*=}")
    echo "round $round: $line (name req/s cpu-us/req errors)"
    echo "$line" >>"$RESULTS"
  done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    name, rate, cpu, _ = line.split()
    by.setdefault(name, []).append((float(rate), float(cpu)))
for name, runs in by.items():
    rates = sorted(r for r, _ in runs)
    cpus = sorted(c for _, c in runs)
    print(f"{name}: req/s median {statistics.median(rates):.0f} (range {rates[0]:.0f}-{rates[-1]:.0f}); "
          f"CPU us/request median {statistics.median(cpus):.1f} (range {cpus[0]:.1f}-{cpus[-1]:.1f}); n={len(runs)}")
PY
