#!/usr/bin/env python3
"""Open N idle mTLS connections to a loopback server and hold them.

    idle_conns.py --target 127.0.0.1:PORT --ca ROOT.pem --certs DIR --count N
                  [--threads T] [--hold SECS] [--deadline SECS]

Each connection completes a TLS 1.3 handshake with a client certificate from DIR
(client-*.pem / client-*.key, round-robin) and then sends nothing. When all are open (or the
deadline passed) it prints one JSON line {"opened": n, "failed": f, "errors": {...}} on stdout
and holds the sockets until SIGTERM arrives or --hold seconds pass; then
it closes everything and exits. Loopback targets only.
"""
import argparse
import glob
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--sni", default="localhost")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--hold", type=float, default=120.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    args = ap.parse_args()

    host, port = args.target.rsplit(":", 1)
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        sys.exit("idle_conns.py: loopback targets only")
    port = int(port)

    pems = sorted(glob.glob(os.path.join(args.certs, "client-*.pem")))
    if not pems:
        sys.exit(f"idle_conns.py: no client-*.pem in {args.certs}")
    contexts = []
    for pem in pems:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(args.ca)
        ctx.load_cert_chain(pem, pem[:-4] + ".key")
        ctx.set_alpn_protocols(["http/1.1"])
        contexts.append(ctx)

    socks = []
    lock = threading.Lock()
    errors = {}
    next_index = [0]
    deadline = time.monotonic() + args.deadline

    def worker():
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= args.count:
                    return
                next_index[0] += 1
            try:
                raw = socket.create_connection((host, port), timeout=10)
                tls = contexts[i % len(contexts)].wrap_socket(raw, server_hostname=args.sni)
                tls.settimeout(None)
                with lock:
                    socks.append(tls)
            except Exception as e:  # noqa: BLE001 - counted by kind
                kind = type(e).__name__
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 1)
    elapsed = time.monotonic() - started
    with lock:
        opened = len(socks)
        failed = sum(errors.values())
    print(json.dumps({"opened": opened, "failed": failed, "errors": errors,
                      "elapsed_secs": round(elapsed, 3)}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    stop.wait(args.hold)
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
