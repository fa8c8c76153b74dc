#!/usr/bin/env bash
# Side-by-side mTLS benchmark: nginx, HAProxy and Portcullis with the same certificates, trust
# store, TLS settings and loopback origin, one server at a time, the server on CPU 0 and the
# load generator on CPU 1. See bench/compare/README.md.
#
# Environment (all optional):
#   BENCH_SECS=10        length of every measured run, seconds
#   QUICK=1              a smoke run: BENCH_SECS=2, IDLE_CONNS=1000, 4 client certificates
#   IDLE_CONNS=10000     idle TLS connections for the memory measurement
#   CLIENT_CERTS=16      client certificates in the pool
#   SERVERS="nginx haproxy portcullis"  (add portcullis-fn: Portcullis running the announcement's
#                        connection function on a store of FN_KVS_KEYS revoked serials)
#   FN_KVS_KEYS=1000000  keys in portcullis-fn's key-value store
#   VARIANTS="ecdsa rsa" (the RSA-2048 variant runs the handshake rows only unless RSA_FULL=1)
#   HS_THREADS=4         load-generator threads in handshake mode
#   KA_CONNS=16          keep-alive connections (keepalive and rate modes)
#   SERVER_CPU=0 CLIENT_CPU=1
#   ORIGIN_CPU=$SERVER_CPU  the shared nginx origin: with the server by default, so the load
#                        generator has its CPU alone and keeps its schedule (on CLIENT_CPU the
#                        origin and the generator fight for one core and the fixed-rate tail
#                        measures that fight)
#   SERVER_CPU_QUOTA=    cap the server (all its processes and threads) at this percentage of one
#                        core with a cgroup CPU quota (v1 cpu.cfs_quota_us or v2 cpu.max; needs
#                        root), e.g. 50: then the server, not the load generator or the origin,
#                        is what saturates, and requests/s compare the servers' own CPU cost.
#                        Empty (default): no cap
#   HANDSHAKE_ONLY=1     only the handshake rows (full and resumed), for every variant
#   SKIP_BUILD=1         use the binaries already in $CARGO_TARGET_DIR/release
#   OUT_DIR=bench/results
#   KEEP_WORK=1          keep the temporary directory (configs, logs, raw JSON)
#   TESTS="handshake resume keepalive rate idle h2 h2rate"   the rows to measure (also h1load:
#                        HTTP/1.1 keep-alive with h2load --h1, reported in the raw files only)
#   RATE_FRACTION=0.5    the fixed rates, as a fraction of the first server's saturation rate
#   RATE_REPEATS=3       fixed-rate runs per server (HTTP/1.1 and HTTP/2); the report gives
#                        the median p99 of the valid ones and their spread
#   H2_CONNS=16 H2_STREAMS=10   h2load connections and concurrent streams per connection
#   H2_RATE_STREAMS=100  concurrent streams per connection in the fixed-rate runs (never the
#                        limit, so h2load's sends do not wait for the server's answers)
#   BENCH_NICE=-15       nice value of the servers, the origin and the load generators (the
#                        machine is shared: other processes must not preempt them); 0 to keep
#   LAG_P99_MS=0.5 LAG_MAX_MS=10 a fixed-rate run whose load generator saw requests due this
#                        late (p99 / max of its own schedule lag) is marked invalid: the p99
#                        bound keeps the generator out of the p99 (a stall under 10 ms delays
#                        well under 1 % of a 10 s run's requests); h2load runs get one timer
#                        period (h2load fires its --rps timer every max(10 ms, 1/rate)) on top
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}
BIN=$CARGO_TARGET_DIR/release

if [[ ${QUICK:-0} == 1 ]]; then
  BENCH_SECS=${BENCH_SECS:-2}
  IDLE_CONNS=${IDLE_CONNS:-1000}
  CLIENT_CERTS=${CLIENT_CERTS:-4}
fi
BENCH_SECS=${BENCH_SECS:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
CLIENT_CERTS=${CLIENT_CERTS:-16}
SERVERS=${SERVERS:-nginx haproxy portcullis}
VARIANTS=${VARIANTS:-ecdsa rsa}
RSA_FULL=${RSA_FULL:-0}
HS_THREADS=${HS_THREADS:-4}
KA_CONNS=${KA_CONNS:-16}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ORIGIN_CPU=${ORIGIN_CPU:-$SERVER_CPU}
SERVER_CPU_QUOTA=${SERVER_CPU_QUOTA:-}
FN_KVS_KEYS=${FN_KVS_KEYS:-1000000}
OUT_DIR=${OUT_DIR:-$ROOT/bench/results}
TESTS=" ${TESTS:-handshake resume keepalive rate idle h2 h2rate} "
RATE_REPEATS=${RATE_REPEATS:-3}
RATE_FRACTION=${RATE_FRACTION:-0.5}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-10}
H2_RATE_STREAMS=${H2_RATE_STREAMS:-100}
BENCH_NICE=${BENCH_NICE:--15}
# "${PIN[@]}" CPU COMMAND...: pinned to CPU, at BENCH_NICE.
PIN=(nice -n "$BENCH_NICE" taskset -c)
export LAG_P99_MS=${LAG_P99_MS:-0.5} LAG_MAX_MS=${LAG_MAX_MS:-10}
want() { [[ $TESTS == *" $1 "* ]]; }
DATE=$(date +%F)
# Every load-generator run is killed after this long at the latest.
RUN_LIMIT=$((BENCH_SECS + 30))

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites (no installs)
missing=()
for pair in nginx:nginx haproxy:haproxy python3:python3 openssl:openssl taskset:util-linux \
  getconf:libc-bin h2load:nghttp2-client cc:gcc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [[ ${SKIP_BUILD:-0} != 1 ]] && ! command -v cargo >/dev/null 2>&1; then
  die "cargo not found (install Rust), or set SKIP_BUILD=1 with prebuilt binaries"
fi
if ((${#missing[@]})); then
  die "missing Debian packages: ${missing[*]} (install them with: apt-get install -y ${missing[*]})"
fi
ncpu=$(nproc)
((ncpu > SERVER_CPU && ncpu > CLIENT_CPU)) || die "needs CPUs $SERVER_CPU and $CLIENT_CPU (nproc=$ncpu)"

# File descriptors: IDLE_CONNS sockets on each side plus some.
need_fds=$((IDLE_CONNS + 512))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need_fds)); then
  die "ulimit -Hn is $hard, IDLE_CONNS=$IDLE_CONNS needs $need_fds (lower IDLE_CONNS)"
fi
ulimit -n "$hard" 2>/dev/null || ulimit -n "$need_fds"
NOFILE=$(ulimit -n)

# ---------------------------------------------------------------- build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building portcullis, portcullis-loadtest (release) and the crypto-bound tool"
  (cd "$ROOT" && cargo build --release -q -p portcullis -p portcullis-loadtest)
  (cd "$HERE/crypto-bound" && cargo build --release -q)
fi
for b in portcullis portcullis-loadtest portcullis-crypto-bound; do
  [[ -x $BIN/$b ]] || die "$BIN/$b not built"
done

# ---------------------------------------------------------------- process bookkeeping
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-compare.XXXXXX")
RAW=$WORK/raw
mkdir -p "$RAW"
STARTED=() # pids of every long-running process this script started

stop_pid() { # stop_pid PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    # nginx workers are children of the master; take them with it.
    local kids
    kids=$(pgrep -P "$pid" || true)
    kill -KILL "$pid" $kids 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  if [[ -n ${CGROUP_DIR:-} ]]; then rmdir "$CGROUP_DIR" 2>/dev/null || log "cgroup $CGROUP_DIR left behind"; fi
  if [[ ${KEEP_WORK:-0} == 1 || $rc != 0 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() { # remove PID from STARTED
  local keep=() p
  for p in "${STARTED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT PID SECONDS: until 127.0.0.1:PORT accepts, PID alive
  local port=$1 pid=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

server_pids() { # the server's processes: the pid and its children (nginx workers)
  local pid=$1
  echo "$pid"
  pgrep -P "$pid" || true
}

stat_ticks() { # stat_ticks AWK_EXPR PID...: AWK_EXPR over the fields of /proc/PID/stat after the
  # command name ($12 utime, $13 stime, in clock ticks; all threads included), summed
  local expr=$1 total=0 p t
  shift
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$(sed 's/^.*) //' "/proc/$p/stat" | awk "{print $expr}")
    total=$((total + t))
  done
  echo "$total"
}
cpu_ticks() { stat_ticks '$12 + $13' "$@"; }  # utime+stime summed over the processes
system_ticks() { stat_ticks '$13' "$@"; }     # stime: the kernel's share of cpu_ticks

core_jiffies() { # core_jiffies CPU: "busy total" jiffies of one CPU from /proc/stat (busy counts
  # user, nice, system, irq, softirq and steal; total adds idle and iowait)
  awk -v c="cpu$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}

# cpu_json T0 T1 W0 W1 RC SC0 SC1 CC0 CC1 O0 O1 K0 K1: the CPU record of one run: the server's
# ticks (and K: of them, its system ticks), the wall time, and how busy the server's and the
# client's cores were and what the shared origin used (to tell which side bounded a saturation
# run).
cpu_json() {
  python3 - "$@" "$(getconf CLK_TCK)" <<'PY'
import json, sys
t0, t1, w0, w1, rc = sys.argv[1:6]
sc0, sc1, cc0, cc1 = (tuple(map(int, a.split())) for a in sys.argv[6:10])
o0, o1, k0, k1, hz = map(int, sys.argv[10:15])
wall = float(w1) - float(w0)
def busy(a, b):
    total = b[1] - a[1]
    return round((b[0] - a[0]) / total, 3) if total > 0 else None
print(json.dumps({"ticks": int(t1) - int(t0), "clk_tck": hz, "wall_secs": round(wall, 3), "rc": int(rc),
                  "server_core_busy": busy(sc0, sc1), "client_core_busy": busy(cc0, cc1),
                  "origin_cpu_secs": round((o1 - o0) / hz, 2), "system_ticks": k1 - k0}))
PY
}

rss_kib() { # VmRSS summed over the processes
  local total=0 p r
  for p in "$@"; do
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# nginx_http_common DIR: the http-block lines both nginx configurations share (temp paths in
# DIR, long-lived keep-alive).
nginx_http_common() {
  local dir=$1
  cat <<EOF
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
EOF
}

# ---------------------------------------------------------------- origin (shared, on ORIGIN_CPU)
start_origin() {
  local dir=$WORK/origin
  mkdir -p "$dir/logs"
  ORIGIN_PORT=$(free_port)
  cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
$(nginx_http_common "$dir")
  server {
    listen 127.0.0.1:$ORIGIN_PORT reuseport backlog=4096;
    location / { default_type text/plain; return 200 "hello from the origin\n"; }
  }
}
EOF
  "${PIN[@]}" "$ORIGIN_CPU" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
    >"$dir/logs/stdout.log" 2>&1 &
  ORIGIN_PID=$!
  STARTED+=("$ORIGIN_PID")
  wait_port "$ORIGIN_PORT" "$ORIGIN_PID" 10 || die "origin nginx did not start: $(cat "$dir/logs/"*)"
  log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (CPU $ORIGIN_CPU)"
}

# ---------------------------------------------------------------- the three servers
# Same for all: server.pem (leaf + intermediate), trust.pem (root), required client
# certificate, verify depth 4, TLS 1.3 only, X25519, ALPN h2 and http/1.1, one worker, keep-alive
# upstream to the origin, X-Forwarded-For/-Proto and four client-certificate headers.
write_nginx() { # DIR PKI PORT
  local dir=$1 pki=$2 port=$3
  mkdir -p "$dir/logs"
  cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections $((IDLE_CONNS + 1000)); }
http {
  access_log off;
$(nginx_http_common "$dir")
  client_header_timeout 600s;
  upstream origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$port ssl http2 backlog=4096;
    server_name localhost;
    ssl_certificate $pki/server.pem;
    ssl_certificate_key $pki/server.key;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_client_certificate $pki/trust.pem;
    ssl_verify_client on;
    ssl_verify_depth 4;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Client-Cert-Serial \$ssl_client_serial;
      proxy_set_header X-Client-Cert-Subject \$ssl_client_s_dn;
      proxy_set_header X-Client-Cert-Issuer \$ssl_client_i_dn;
      proxy_set_header X-Client-Cert-Verify \$ssl_client_verify;
    }
  }
}
EOF
}

write_haproxy() { # DIR PKI PORT
  local dir=$1 pki=$2 port=$3
  mkdir -p "$dir/logs"
  cat > "$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  # idle frontend connections use one fd each; haproxy budgets two and would refuse to start
  no strict-limits
  maxconn $((IDLE_CONNS + 500))
  ulimit-n $NOFILE
  tune.ssl.default-dh-param 2048

defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 600s
  timeout server 60s
  timeout http-request 600s
  timeout http-keep-alive 600s

frontend bench
  bind 127.0.0.1:$port ssl crt $pki/server-combined.pem ca-file $pki/trust.pem verify required alpn h2,http/1.1 ssl-min-ver TLSv1.3 curves X25519
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Client-Cert-Serial %[ssl_c_serial,hex]
  http-request set-header X-Client-Cert-Subject %{+Q}[ssl_c_s_dn]
  http-request set-header X-Client-Cert-Issuer %{+Q}[ssl_c_i_dn]
  http-request set-header X-Client-Cert-Verify %[ssl_c_verify]
  default_backend origin

backend origin
  http-reuse always
  server origin 127.0.0.1:$ORIGIN_PORT maxconn 1000
EOF
}

write_portcullis() { # DIR PKI PORT [FUNCTION]
  local dir=$1 pki=$2 port=$3 function=${4:-}
  mkdir -p "$dir/logs"
  cat > "$dir/portcullis.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
workers = 1
cpu_affinity = [$SERVER_CPU]

[server.timeouts]
handshake = "10s"
header_read = "600s"
idle_keepalive = "600s"

[server.limits]
max_connections_per_worker = $((IDLE_CONNS + 1000))

[[site]]
name = "bench"
server_names = ["localhost"]
default = true
certificate = "$pki/server.pem"
private_key = "$pki/server.key"
origin = "http://127.0.0.1:$ORIGIN_PORT"

[site.mtls]
mode = "required"
trust_store = "$pki/trust.pem"
max_chain_depth = 4
advertise_ca_names = true
forward_headers = ["serial-number", "subject", "issuer", "present"]
EOF
  if [[ -n $function ]]; then
    # The announcement's function (shipped byte for byte) on a store of FN_KVS_KEYS serials
    # that no client certificate has: every handshake runs it and is allowed.
    cp "$ROOT/dataplane/functions/revocation.js" "$dir/revocation.js"
    python3 - "$dir/viewers.json" "$FN_KVS_KEYS" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write('{"data":[')
    f.write(",".join('{"key":"%032x","value":"bench"}' % (0xfeed << 100 | i) for i in range(int(sys.argv[2]))))
    f.write("]}")
PY
    cat >> "$dir/portcullis.toml" <<EOF
connection_function = { file = "$dir/revocation.js", kvs = "viewers", time_limit = "5ms" }

[[revocation_store]]
name = "viewers"
file = "$dir/viewers.json"
EOF
  fi
  "$BIN/portcullis" check --config "$dir/portcullis.toml" >"$dir/logs/check.log" 2>&1 \
    || die "portcullis check failed: $(cat "$dir/logs/check.log")"
}

SERVER_PID=
SERVER_PORT=
start_server() { # start_server NAME VARIANT
  local name=$1 variant=$2 pki=$WORK/pki-$2 dir=$WORK/$1-$2
  SERVER_PORT=$(free_port)
  case $name in
    nginx)
      write_nginx "$dir" "$pki" "$SERVER_PORT"
      "${PIN[@]}" "$SERVER_CPU" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >"$dir/logs/stdout.log" 2>&1 &
      ;;
    haproxy)
      write_haproxy "$dir" "$pki" "$SERVER_PORT"
      "${PIN[@]}" "$SERVER_CPU" haproxy -db -f "$dir/haproxy.cfg" >"$dir/logs/stdout.log" 2>&1 &
      ;;
    portcullis | portcullis-fn)
      write_portcullis "$dir" "$pki" "$SERVER_PORT" "$([[ $name == portcullis-fn ]] && echo fn)"
      "${PIN[@]}" "$SERVER_CPU" "$BIN/portcullis" run --config "$dir/portcullis.toml" \
        >"$dir/logs/stdout.log" 2>"$dir/logs/stderr.log" &
      ;;
    *) die "unknown server $name" ;;
  esac
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  if ! wait_port "$SERVER_PORT" "$SERVER_PID" 60; then
    die "$name did not start on 127.0.0.1:$SERVER_PORT: $(tail -n 20 "$dir/logs/"* 2>/dev/null)"
  fi
  sleep 0.3 # let nginx fork its worker
  log "$name ($variant) on 127.0.0.1:$SERVER_PORT, pids $(server_pids "$SERVER_PID" | tr '\n' ' ')"
  cap_server
}

# cap_server: moves the server's processes into a cgroup capped at SERVER_CPU_QUOTA % of one
# core (10 ms period, so a capped server pauses for at most a few ms at a time).
CGROUP_DIR=
cap_server() {
  [[ -n $SERVER_CPU_QUOTA ]] || return 0
  local period=${CPU_QUOTA_PERIOD_US:-100000} p quota
  quota=$((SERVER_CPU_QUOTA * period / 100))
  if [[ -z $CGROUP_DIR ]]; then
    if [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then
      CGROUP_DIR=/sys/fs/cgroup/cpu/portcullis-bench-$$
      mkdir -p "$CGROUP_DIR"
      echo "$period" >"$CGROUP_DIR/cpu.cfs_period_us"
      echo "$quota" >"$CGROUP_DIR/cpu.cfs_quota_us"
    elif [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
      CGROUP_DIR=/sys/fs/cgroup/portcullis-bench-$$
      echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
      mkdir -p "$CGROUP_DIR"
      echo "$quota $period" >"$CGROUP_DIR/cpu.max"
    else
      die "SERVER_CPU_QUOTA needs a writable cgroup cpu controller (run as root)"
    fi
  fi
  for p in $(server_pids "$SERVER_PID"); do echo "$p" >"$CGROUP_DIR/cgroup.procs"; done
  log "  capped at $SERVER_CPU_QUOTA % of a core ($CGROUP_DIR)"
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  stop_pid "$SERVER_PID"
  forget_pid "$SERVER_PID"
  SERVER_PID=
}

# ---------------------------------------------------------------- one load-generator run
# lt TAG VARIANT MODE ARGS...: runs portcullis-loadtest on CLIENT_CPU against the current
# server, writes $RAW/TAG.json (its summary) and $RAW/TAG.cpu.json (the server's CPU time).
lt() {
  local tag=$1 variant=$2 mode=$3
  shift 3
  local pki=$WORK/pki-$variant pids t0 t1 w0 w1 rc=0
  mapfile -t pids < <(server_pids "$SERVER_PID")
  mapfile -t opids < <(server_pids "$ORIGIN_PID")
  o0=$(cpu_ticks "${opids[@]}") sc0=$(core_jiffies "$SERVER_CPU") cc0=$(core_jiffies "$CLIENT_CPU")
  t0=$(cpu_ticks "${pids[@]}") k0=$(system_ticks "${pids[@]}")
  w0=$(date +%s.%N)
  timeout --kill-after=5 "$RUN_LIMIT" "${PIN[@]}" "$CLIENT_CPU" "$BIN/portcullis-loadtest" "$mode" \
    --target "127.0.0.1:$SERVER_PORT" --sni localhost --ca "$pki/root-ca.pem" --certs "$pki/certs" \
    --no-progress --json --max-errors 1000000 "$@" >"$RAW/$tag.json" 2>"$RAW/$tag.stderr" || rc=$?
  w1=$(date +%s.%N)
  t1=$(cpu_ticks "${pids[@]}") k1=$(system_ticks "${pids[@]}")
  o1=$(cpu_ticks "${opids[@]}") sc1=$(core_jiffies "$SERVER_CPU") cc1=$(core_jiffies "$CLIENT_CPU")
  cpu_json "$t0" "$t1" "$w0" "$w1" "$rc" "$sc0" "$sc1" "$cc0" "$cc1" "$o0" "$o1" "$k0" "$k1" >"$RAW/$tag.cpu.json"
  if [[ $rc != 0 || ! -s $RAW/$tag.json ]]; then
    log "  $tag: loadtest exited $rc: $(tail -n 3 "$RAW/$tag.stderr" | tr '\n' ' ')"
  else
    python3 - "$RAW/$tag.json" "$RAW/$tag.cpu.json" "$tag" >&2 <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
cpu = c["ticks"] / c["clk_tck"]
per = cpu * 1e6 / s["completed"] if s["completed"] else float("nan")
print(f"  {sys.argv[3]}: {s['ops_per_sec']:.0f} {s['unit']}/s, errors {s['unexpected_errors']}, "
      f"server CPU {100 * cpu / c['wall_secs']:.0f}% ({per:.1f} us/op), p99 {s['latency']['p99_us']} us, "
      f"cores busy: server {c['server_core_busy']}, client {c['client_core_busy']}, origin CPU {c['origin_cpu_secs']} s")
PY
  fi
}

# ---------------------------------------------------------------- HTTP/2 runs (h2load + shim)
# h2 TAG VARIANT [--rps N]: h2load in its default HTTP/2 mode on CLIENT_CPU, H2_CONNS
# connections with H2_STREAMS streams each, BENCH_SECS (after a 1 s warm-up), with the client
# certificate through loadtest/h2load-client-cert. Writes $RAW/TAG.json (h2load's figures, and
# with a per-request log the latency percentiles and whether the rate was kept) and
# $RAW/TAG.cpu.json.
h2() {
  local tag=$1 variant=$2
  shift 2
  local pki=$WORK/pki-$variant pids t0 t1 w0 w1 rc=0 target=0 streams=$H2_STREAMS
  if [[ ${1:-} == --rps ]]; then
    target=$(($2 * H2_CONNS))
    streams=$H2_RATE_STREAMS
  fi
  mapfile -t pids < <(server_pids "$SERVER_PID")
  mapfile -t opids < <(server_pids "$ORIGIN_PID")
  o0=$(cpu_ticks "${opids[@]}") sc0=$(core_jiffies "$SERVER_CPU") cc0=$(core_jiffies "$CLIENT_CPU")
  t0=$(cpu_ticks "${pids[@]}") k0=$(system_ticks "${pids[@]}")
  w0=$(date +%s.%N)
  H2LOAD_CLIENT_CERT=$pki/certs/client-0.pem H2LOAD_CLIENT_KEY=$pki/certs/client-0.key \
    H2LOAD_SHIM_DIR=$WORK/shim timeout --kill-after=5 "$RUN_LIMIT" "${PIN[@]}" "$CLIENT_CPU" \
    "$ROOT/loadtest/h2load-client-cert/run.sh" -c "$H2_CONNS" -m "$streams" \
    --warm-up-time=1 -D "$BENCH_SECS" --log-file="$RAW/$tag.log" "$@" \
    "--connect-to=127.0.0.1:$SERVER_PORT" "https://localhost:$SERVER_PORT/" \
    >"$RAW/$tag.stdout" 2>"$RAW/$tag.stderr" || rc=$?
  w1=$(date +%s.%N)
  t1=$(cpu_ticks "${pids[@]}") k1=$(system_ticks "${pids[@]}")
  o1=$(cpu_ticks "${opids[@]}") sc1=$(core_jiffies "$SERVER_CPU") cc1=$(core_jiffies "$CLIENT_CPU")
  cpu_json "$t0" "$t1" "$w0" "$w1" "$rc" "$sc0" "$sc1" "$cc0" "$cc1" "$o0" "$o1" "$k0" "$k1" >"$RAW/$tag.cpu.json"
  python3 "$HERE/h2load_summary.py" --stdout "$RAW/$tag.stdout" --log "$RAW/$tag.log" \
    --secs "$BENCH_SECS" --target-rate "$target" --clients "$H2_CONNS" >"$RAW/$tag.json" 2>>"$RAW/$tag.stderr" \
    || log "  $tag: no h2load summary: $(tail -n 3 "$RAW/$tag.stderr" | tr '\n' ' ')"
  rm -f "$RAW/$tag.log"
  if [[ -s $RAW/$tag.json ]]; then log "  $tag: $(cat "$RAW/$tag.json")"; fi
}

# ---------------------------------------------------------------- idle connections
idle_test() { # idle_test NAME VARIANT: fresh server, RSS before/after IDLE_CONNS idle TLS conns
  local name=$1 variant=$2 pki=$WORK/pki-$2 tag=$2.$1.idle
  start_server "$name" "$variant"
  lt "$variant.$name.idle-warmup" "$variant" handshake -t "$HS_THREADS" -d 1 >/dev/null
  sleep 1
  local pids before after hp deadline
  mapfile -t pids < <(server_pids "$SERVER_PID")
  before=$(rss_kib "${pids[@]}")
  taskset -c "$CLIENT_CPU" python3 "$HERE/idle_conns.py" --target "127.0.0.1:$SERVER_PORT" \
    --ca "$pki/root-ca.pem" --certs "$pki/certs" --count "$IDLE_CONNS" --threads 8 \
    --deadline 120 --hold 300 >"$RAW/$tag.helper.json" 2>"$RAW/$tag.stderr" &
  hp=$!
  STARTED+=("$hp")
  deadline=$((SECONDS + 150))
  while [[ ! -s $RAW/$tag.helper.json ]] && ((SECONDS < deadline)) && kill -0 "$hp" 2>/dev/null; do
    sleep 0.5
  done
  sleep 2 # let the server finish the last handshakes
  mapfile -t pids < <(server_pids "$SERVER_PID")
  after=$(rss_kib "${pids[@]}")
  stop_pid "$hp"
  forget_pid "$hp"
  [[ -s $RAW/$tag.helper.json ]] || die "idle helper produced nothing: $(cat "$RAW/$tag.stderr")"
  python3 - "$RAW/$tag.helper.json" "$before" "$after" >"$RAW/$tag.json" <<'PY'
import json, sys
h = json.loads(open(sys.argv[1]).read().splitlines()[0])
h.update({"rss_before_kib": int(sys.argv[2]), "rss_after_kib": int(sys.argv[3])})
print(json.dumps(h))
PY
  log "  idle: $(cat "$RAW/$tag.json")"
  stop_server
}

# ---------------------------------------------------------------- machine facts
facts() {
  python3 - "$RAW/facts.json" <<PY
import json, subprocess, sys
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip() + \
               subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stderr.strip()
    except Exception as e:
        return str(e)
model = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        model = line.split(":", 1)[1].strip(); break
mem = next((l.split(":")[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal")), "")
json.dump({
    "date": "$DATE",
    "nproc": int(sh("nproc")),
    "cpu_model": model,
    "mem_total": mem,
    "kernel": sh("uname -srm"),
    "nginx": sh("nginx -v 2>&1").replace("nginx version: ", ""),
    "nginx_openssl": sh("nginx -V 2>&1 | grep -o 'built with OpenSSL [^ ]*' | head -1"),
    "haproxy": sh("haproxy -v | head -1"),
    "haproxy_openssl": sh("haproxy -vv | grep 'Running on OpenSSL' | head -1"),
    "portcullis": sh("cd $ROOT && git describe --always --dirty 2>/dev/null") + " (boring 5.4.0 / BoringSSL)",
    "openssl": sh("openssl version"),
    "bench_secs": $BENCH_SECS, "idle_conns": $IDLE_CONNS, "client_certs": $CLIENT_CERTS,
    "hs_threads": $HS_THREADS, "fn_kvs_keys": $FN_KVS_KEYS, "ka_conns": $KA_CONNS, "h2_conns": $H2_CONNS, "h2_streams": $H2_STREAMS, "rate_repeats": $RATE_REPEATS, "tests": "$TESTS".strip(),
    "server_cpu": $SERVER_CPU, "client_cpu": $CLIENT_CPU, "origin_cpu": $ORIGIN_CPU, "nice": $BENCH_NICE, "h2_rate_streams": $H2_RATE_STREAMS,
    "server_cpu_quota_pct": ${SERVER_CPU_QUOTA:-None}, "cpu_quota_period_us": ${CPU_QUOTA_PERIOD_US:-100000},
    "loadavg_start": open("/proc/loadavg").read().strip(),
}, open(sys.argv[1], "w"), indent=1)
PY
}

# crypto_bound PKI_DIR OUT_JSON: the BoringSSL crypto bound of one handshake on SERVER_CPU.
crypto_bound() {
  local pki=$1 out=$2
  taskset -c "$SERVER_CPU" "$BIN/portcullis-crypto-bound" --server-key "$pki/server.key" \
    --client-key "$pki/certs/client-0.key" --client-leaf "$pki/certs/client-0.pem" \
    --intermediate "$pki/intermediate.pem" --root "$pki/root-ca.pem" >"$out"
}

# ---------------------------------------------------------------- main
log "work dir $WORK; ${BENCH_SECS}s runs; servers: $SERVERS; variants: $VARIANTS"
facts
start_origin

for variant in $VARIANTS; do
  pki=$WORK/pki-$variant
  log "PKI ($variant): root -> intermediate -> server + $CLIENT_CERTS clients"
  "$HERE/gen_pki.sh" "$pki" "$variant" "$CLIENT_CERTS"

  log "crypto bound ($variant) on CPU $SERVER_CPU"
  crypto_bound "$pki" "$RAW/$variant.crypto.json"
  log "  $(cat "$RAW/$variant.crypto.json")"

  full=1
  [[ $variant == rsa && $RSA_FULL != 1 ]] && full=0
  [[ ${HANDSHAKE_ONLY:-0} == 1 ]] && full=0
  sat_rate=
  h2_rate=
  for name in $SERVERS; do
    log "== $name ($variant)"
    start_server "$name" "$variant"
    # What a BoringSSL client with default settings (as portcullis-loadtest) negotiates.
    timeout 10 "$BIN/portcullis-crypto-bound" --probe "127.0.0.1:$SERVER_PORT" --ca "$pki/root-ca.pem" \
      --cert "$pki/certs/client-0.pem" --key "$pki/certs/client-0.key" \
      >"$RAW/$variant.$name.probe.json" 2>"$RAW/$variant.$name.probe.stderr" \
      || log "  probe failed: $(cat "$RAW/$variant.$name.probe.stderr")"
    log "  negotiated: $(cat "$RAW/$variant.$name.probe.json" 2>/dev/null)"
    lt "$variant.$name.warmup" "$variant" handshake -t "$HS_THREADS" -d 1 2>/dev/null
    if want handshake; then
      # The bound again right before and after this server's handshake runs: the machine's
      # speed drifts (shared VM), and the ratio should compare like with like.
      crypto_bound "$pki" "$RAW/$variant.$name.bound-before.json"
      lt "$variant.$name.handshake" "$variant" handshake -t "$HS_THREADS" -d "$BENCH_SECS"
      crypto_bound "$pki" "$RAW/$variant.$name.bound-after.json"
    fi
    want resume && lt "$variant.$name.resume" "$variant" handshake --resume -t "$HS_THREADS" -d "$BENCH_SECS"
    if ((full)) && want keepalive; then
      lt "$variant.$name.keepalive" "$variant" keepalive -t 2 -c "$KA_CONNS" -r 100000000 -d "$BENCH_SECS"
      if [[ -z $sat_rate ]]; then
        # The rate for the latency runs: half the keep-alive saturation rate of the first
        # server (nginx by default).
        sat_rate=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["ops_per_sec"] * float(sys.argv[2]))))' \
          "$RAW/$variant.$name.keepalive.json" "$RATE_FRACTION" 2>/dev/null || echo 1000)
        echo "{\"rate\": $sat_rate, \"from\": \"$name\", \"fraction\": $RATE_FRACTION}" >"$RAW/$variant.rate.json"
        log "  latency runs at $sat_rate req/s ($RATE_FRACTION of $name's keep-alive rate)"
      fi
    fi
    if ((full)) && want rate && [[ -n $sat_rate ]]; then
      for i in $(seq "$RATE_REPEATS"); do
        suffix=; ((i > 1)) && suffix=-$i
        lt "$variant.$name.rate$suffix" "$variant" rate --rate "$sat_rate" -t 2 -c "$KA_CONNS" -d "$BENCH_SECS"
      done
    fi
    if ((full)) && want h2; then
      h2 "$variant.$name.h2" "$variant"
      if [[ -z $h2_rate ]]; then
        h2_rate=$(python3 -c 'import json,sys; print(max(1, int(json.load(open(sys.argv[1]))["req_per_sec"] * float(sys.argv[2]))))' \
          "$RAW/$variant.$name.h2.json" "$RATE_FRACTION" 2>/dev/null || echo 1000)
        echo "{\"rate\": $h2_rate, \"from\": \"$name\", \"fraction\": $RATE_FRACTION}" >"$RAW/$variant.h2rate.json"
        log "  HTTP/2 latency runs at $h2_rate req/s ($RATE_FRACTION of $name's HTTP/2 rate)"
      fi
    fi
    # HTTP/1.1 keep-alive requests/s measured with h2load --h1 (C, libev: a cheaper client than
    # portcullis-loadtest, whose core saturates first): one request in flight per connection
    # (no pipelining), H2_CONNS connections.
    if ((full)) && want h1load; then
      h2 "$variant.$name.h1load" "$variant" --h1
    fi
    if ((full)) && want h2rate && [[ -n $h2_rate ]]; then
      for i in $(seq "$RATE_REPEATS"); do
        suffix=; ((i > 1)) && suffix=-$i
        h2 "$variant.$name.h2rate$suffix" "$variant" --rps "$(( (h2_rate + H2_CONNS - 1) / H2_CONNS ))"
      done
    fi
    stop_server
    if ((full)) && want idle; then idle_test "$name" "$variant"; fi
  done
done

cat /proc/loadavg >"$RAW/loadavg_end.txt"
mkdir -p "$OUT_DIR/raw-$DATE"
# The raw summaries stay with the report, so it can be rebuilt and checked.
cp "$RAW"/*.json "$RAW"/*.txt "$OUT_DIR/raw-$DATE/" 2>/dev/null || true
python3 "$HERE/compare.py" --raw "$RAW" --out "$OUT_DIR/compare-$DATE"
log "wrote $OUT_DIR/compare-$DATE.md, .svg and .json"
