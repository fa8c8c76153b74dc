#!/usr/bin/env bash
# Where Portcullis' fixed-rate tail comes from: one fixed-rate HTTP/1.1 run (RATE, default
# 16000 req/s, 8 s) against Portcullis (CPU 0, with the nginx origin) from portcullis-loadtest
# (CPU 1), then side by side: the generator's latency, service time and schedule lag; the
# server's own per-phase histograms from /metrics (request head to end of response, and origin
# connect to response head: the share of requests above 0.5/1/2.5/5/10 ms); and `perf sched
# latency` of the worker thread and the origin (how long they waited for a CPU).
#
#   CARGO_TARGET_DIR=... bench/compare/tail_phases.sh    (needs the release binaries, nginx,
#                                                          perf; runs as root for perf sched)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}/release
W=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-tail.XXXXXX"); mkdir -p $W/origin/logs $W/p
trap 'kill $PP $ONG 2>/dev/null || true; rm -rf "$W"' EXIT
PP=; ONG=
"$HERE/gen_pki.sh" $W/pki ecdsa 4 >/dev/null 2>&1
OP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > $W/origin/nginx.conf <<C
worker_processes 1; daemon off; pid $W/origin/nginx.pid; error_log $W/origin/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/origin/b; proxy_temp_path $W/origin/p; fastcgi_temp_path $W/origin/f; uwsgi_temp_path $W/origin/u; scgi_temp_path $W/origin/s;
  keepalive_requests 100000000; keepalive_timeout 600s;
  server { listen 127.0.0.1:$OP reuseport backlog=4096; location / { default_type text/plain; return 200 "hello from the origin\n"; } } }
C
nice -n -15 taskset -c 0 nginx -p $W/origin/ -c $W/origin/nginx.conf -e $W/origin/logs/error.log & ONG=$!
SP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > $W/p/portcullis.toml <<C
[server]
listen = ["127.0.0.1:$SP"]
workers = 1
cpu_affinity = [0]
[server.timeouts]
header_read = "600s"
idle_keepalive = "600s"
[admin]
listen = "127.0.0.1:$AP"
[[site]]
name = "bench"
server_names = ["localhost"]
certificate = "$W/pki/server.pem"
private_key = "$W/pki/server.key"
origin = "http://127.0.0.1:$OP"
[site.mtls]
mode = "required"
trust_store = "$W/pki/trust.pem"
advertise_ca_names = true
forward_headers = ["serial-number", "subject", "issuer", "present"]
C
nice -n -15 taskset -c 0 $BIN/portcullis run --config $W/p/portcullis.toml > $W/p/out.log 2> $W/p/err.log & PP=$!
sleep 1.5
LT="nice -n -15 taskset -c 1 $BIN/portcullis-loadtest"
COMMON="--target 127.0.0.1:$SP --sni localhost --ca $W/pki/root-ca.pem --certs $W/pki/certs --no-progress --json --max-errors 100000"
$LT keepalive $COMMON -t 2 -c 16 -r 100000000 -d 3 > $W/warm.json 2>/dev/null
curl -s http://127.0.0.1:$AP/metrics > $W/m0.txt
(perf sched record -o $W/sched.data -- sleep 6 >/dev/null 2>&1 &)
$LT rate $COMMON --rate ${RATE:-16000} -t 2 -c 16 -d 8 > $W/rate.json 2>/dev/null
curl -s http://127.0.0.1:$AP/metrics > $W/m1.txt
sleep 1
kill $PP $ONG; wait $PP $ONG 2>/dev/null || true
PP=; ONG=
python3 - $W <<'PY'
import json, sys, re
w = sys.argv[1]
r = json.load(open(f"{w}/rate.json"))
print("loadtest: %.0f req/s  latency p50 %.2f p99 %.2f p99.9 %.2f max %.2f ms | service p99 %.2f ms | max send lag %.1f ms | schedule lag p99 %.2f max %.2f ms" % (
  r["ops_per_sec"], r["latency"]["p50_us"]/1e3, r["latency"]["p99_us"]/1e3, r["latency"]["p999_us"]/1e3, r["latency"]["max_us"]/1e3,
  r["service_time"]["p99_us"]/1e3, r["max_send_lag_us"]/1e3, r["schedule_lag"]["p99_us"]/1e3, r["schedule_lag"]["max_us"]/1e3))
def hist(path, name):
    out = {}
    for line in open(path):
        m = re.match(r'%s_bucket\{([^}]*)\} (\d+)' % name, line)
        if m:
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            le = "+Inf" if le == "+Inf" else str(float(le))
            out[le] = out.get(le, 0) + int(m.group(2))
    return out
for name in ("portcullis_request_duration_seconds", "portcullis_origin_duration_seconds"):
    a, b = hist(f"{w}/m0.txt", name), hist(f"{w}/m1.txt", name)
    d = {k: b.get(k, 0) - a.get(k, 0) for k in b}
    total = d.get("+Inf", 0)
    if not total: print(name, "no data"); continue
    over = lambda le: total - d.get(str(float(le)), 0)
    print(f"{name}: {total} requests; > 0.5 ms: {over('0.0005')} ({100*over('0.0005')/total:.2f} %), > 1 ms: {over('0.001')} ({100*over('0.001')/total:.2f} %), > 2.5 ms: {over('0.0025')}, > 5 ms: {over('0.005')}, > 10 ms: {over('0.01')}")
PY
perf sched latency -i $W/sched.data --sort max 2>/dev/null | grep -E 'Task|portcullis|nginx|---' | head -12
