#!/usr/bin/env bash
# A/B of Portcullis builds on the same keep-alive load: alternates the builds ROUNDS times and
# prints, per run, requests/s and the server's CPU time per request (user + system, from
# /proc; less sensitive to a noisy neighbour than throughput), then the median per build.
#
#   bench/compare/ab.sh NAME=/path/to/portcullis NAME2=/path/to/other-portcullis ...
#
# Every run also gives, per request: the TCP segments the machine sent (`nstat`; 4 means no
# segment beyond the request and the response on each leg, i.e. no pure ACKs), and the
# server's voluntary and involuntary context switches. With PROFILE=1 the middle of each run
# is sampled with `perf record -e cpu-clock` and the split of the server's CPU between the
# kernel and user space is printed (the profiles stay in PROFILE_DIR, default a temporary
# directory removed at the end; read them with `perf report -i FILE --no-children`).
#
# LOAD=h2 drives HTTP/2 instead: stock h2load through the client-certificate shim
# (loadtest/h2load-client-cert), H2_CONNS connections with H2_STREAMS streams each (16 x 10, as
# run.sh), SECS after a 1 s warm-up.
#
# Environment (optional): ROUNDS=5, SECS=5, KA_CONNS=16, LOAD=h1 (or h2), H2_CONNS=16,
# H2_STREAMS=10, SERVER_CPU=0, CLIENT_CPU=1,
# ORIGIN_CPU (default SERVER_CPU, as in run.sh), BENCH_NICE=-15 (as run.sh), LOADTEST=path to portcullis-loadtest (default: $CARGO_TARGET_DIR/release/portcullis-loadtest),
# PROFILE=1 and PROFILE_DIR as above.
# Needs nginx (the origin), openssl, taskset and nstat (iproute2), like run.sh; perf for PROFILE.
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
PROFILE=${PROFILE:-}
LOAD=${LOAD:-h1}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-10}
ROOT=$(cd "$HERE/../.." && pwd)
PROFILE_DIR=${PROFILE_DIR:-}
(($# >= 2)) || { echo "usage: $0 NAME=BINARY NAME=BINARY [...]" >&2; exit 2; }

WORK=$(mktemp -d)
export NSTAT_HISTORY=$WORK/nstat.history  # our own counter history, not the shared one in /tmp
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
# Voluntary and involuntary context switches of every thread of PID: "VOL INVOL".
ctx_switches() {
  cat "/proc/$1"/task/*/status | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v, n}'
}
[[ -n $PROFILE && -z $PROFILE_DIR ]] && PROFILE_DIR=$WORK/profiles
[[ -n $PROFILE ]] && mkdir -p "$PROFILE_DIR"

run_one() { # NAME BINARY ROUND -> "name reqs_per_s cpu_us_per_req errors segs_per_req vol_per_req invol_per_req kernel_share"
  local name=$1 bin=$2 round=$3
  nice -n "$BENCH_NICE" taskset -c "$SERVER_CPU" "$bin" run --config "$WORK/portcullis.toml" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  wait_port "$PORT" || { echo "$name did not start: $(cat "$WORK/$name.err")" >&2; exit 1; }
  local before switches_before after switches_after segs kernel_share=-
  before=$(cpu_ticks "$pid")
  switches_before=$(ctx_switches "$pid")
  nstat -n
  if [[ $LOAD == h2 ]]; then
    H2LOAD_CLIENT_CERT=$WORK/pki/certs/client-0.pem H2LOAD_CLIENT_KEY=$WORK/pki/certs/client-0.key \
      H2LOAD_SHIM_DIR=$WORK/shim nice -n "$BENCH_NICE" taskset -c "$CLIENT_CPU" \
      "$ROOT/loadtest/h2load-client-cert/run.sh" -c "$H2_CONNS" -m "$H2_STREAMS" --warm-up-time=1 \
      -D "$SECS" "--connect-to=127.0.0.1:$PORT" "https://localhost:$PORT/" >"$WORK/$name.h2load" 2>&1 &
  else
    nice -n "$BENCH_NICE" taskset -c "$CLIENT_CPU" "$LOADTEST" keepalive --target "127.0.0.1:$PORT" --ca "$WORK/pki/root-ca.pem" \
      --certs "$WORK/pki/certs" -t 2 -c "$KA_CONNS" -r 100000000 -d "$SECS" --json --no-progress \
      >"$WORK/$name.json" 2>/dev/null &
  fi
  local load=$!
  if [[ -n $PROFILE ]]; then
    # The middle of the run: a second after the start, until a second before the end.
    local data="$PROFILE_DIR/$name-$round.data"
    sleep 1
    perf record -q -e cpu-clock -F 4999 -g -p "$pid" -o "$data" -- sleep $((SECS > 2 ? SECS - 2 : 1)) >/dev/null 2>&1
    kernel_share=$(perf report -i "$data" --no-children --sort dso -g none 2>/dev/null |
      awk '/\[kernel\.kallsyms\]/ {sub("%", "", $1); print $1 "%"}')
  fi
  wait "$load"
  if [[ $LOAD == h2 ]]; then # h2load's summary (h2load_summary.py) as the loadtest's JSON
    python3 "$HERE/h2load_summary.py" --stdout "$WORK/$name.h2load" --secs "$SECS" |
      python3 -c '
import json, sys
s = json.load(sys.stdin)
# Errors: failed requests and answers other than 2xx.
print(json.dumps({"completed": s["done"], "ops_per_sec": s["req_per_sec"],
                  "errors": [{"count": s["failed"] + s["not_2xx_total"], "expected": False}]}))' \
      >"$WORK/$name.json"
  fi
  segs=$(nstat -s TcpOutSegs | awk '$1 == "TcpOutSegs" {print $2}')
  after=$(cpu_ticks "$pid")
  switches_after=$(ctx_switches "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$WORK/$name.json" "$before" "$after" "$(getconf CLK_TCK)" "$name" "${segs:-0}" \
    "$switches_before" "$switches_after" "$kernel_share" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks = int(sys.argv[3]) - int(sys.argv[2])
hz = int(sys.argv[4])
ops = max(r["completed"], 1)
rate = r["ops_per_sec"]
errors = sum(e["count"] for e in r["errors"] if not e["expected"])
cpu_us = ticks / hz * 1e6 / ops
segs = int(sys.argv[6]) / ops
(v0, n0), (v1, n1) = (map(int, a.split()) for a in sys.argv[7:9])
print(f"{sys.argv[5]} {rate:.0f} {cpu_us:.1f} {errors} {segs:.2f} {(v1 - v0) / ops:.3f} "
      f"{(n1 - n0) / ops:.3f} {sys.argv[9]}")
PY
}

RESULTS=$WORK/results.txt
for round in $(seq "$ROUNDS"); do
  for pair in "$@"; do
    line=$(run_one "${pair%%=*}" "${pair#*=}" "$round")
    echo "round $round: $line (name req/s cpu-us/req errors segments/req voluntary/req involuntary/req kernel-share)"
    echo "$line" >>"$RESULTS"
  done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    name, rate, cpu = line.split()[:3]
    by.setdefault(name, []).append((float(rate), float(cpu)))
for name, runs in by.items():
    rates = sorted(r for r, _ in runs)
    cpus = sorted(c for _, c in runs)
    print(f"{name}: req/s median {statistics.median(rates):.0f} (range {rates[0]:.0f}-{rates[-1]:.0f}); "
          f"CPU us/request median {statistics.median(cpus):.1f} (range {cpus[0]:.1f}-{cpus[-1]:.1f}); n={len(runs)}")
PY
