#!/usr/bin/env python3
"""Hostile and edge-case HTTP/2 clients for the end-to-end tests (tests/tests/http2.rs).

Each scenario opens a TLS connection with ALPN h2 and a client certificate, drives the
connection with the `h2` package (PyPI), or writes raw frames with `hyperframe` where the
package would refuse to misbehave, and prints one JSON object describing what the server
did (statuses, stream resets with their error codes, GOAWAY with its error code, whether
the connection closed). Every wait is bounded.

usage: h2_hostile.py SCENARIO PORT CA CERT KEY
"""

import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

HOST = "localhost"


def connect(port, ca, cert, key, settings=None):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=HOST)
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(path, method="GET", extra=()):
    return [
        (":method", method),
        (":scheme", "https"),
        (":authority", f"{HOST}"),
        (":path", path),
    ] + list(extra)


class Outcome:
    """What the server did, gathered from the events."""

    def __init__(self):
        self.status = {}
        self.body = {}
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.closed = False

    def as_dict(self):
        return {
            "status": {str(k): v for k, v in self.status.items()},
            "body_len": {str(k): len(v) for k, v in self.body.items()},
            "ended": sorted(self.ended),
            "resets": {str(k): v for k, v in self.resets.items()},
            "goaway": self.goaway,
            "closed": self.closed,
        }


def pump(sock, conn, out, until, timeout):
    """Reads and handles events until `until(out)` holds, the connection closes or `timeout`."""
    deadline = time.monotonic() + timeout
    while not until(out) and not out.closed:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        except (ConnectionError, ssl.SSLError, OSError):
            out.closed = True
            break
        if not data:
            out.closed = True
            break
        try:
            events = conn.receive_data(data)
        except Exception as e:  # a frame the client library itself refuses
            out.closed = out.closed or False
            print(f"client library refused a frame: {e}", file=sys.stderr)
            events = []
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                out.status[ev.stream_id] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                pass
            elif isinstance(ev, h2.events.DataReceived):
                out.body.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                out.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                out.resets[ev.stream_id] = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out.goaway = int(ev.error_code)
        pending = conn.data_to_send()
        if pending:
            try:
                sock.sendall(pending)
            except OSError:
                out.closed = True
    return out


def wait_closed(sock, conn, out, timeout=10):
    return pump(sock, conn, out, lambda o: False, timeout)


def scenario_streams(port, ca, cert, key):
    # 130 request streams whose bodies do not end yet, sent before the server's SETTINGS are
    # read (so the client library does not hold them back): the limit is 128.
    sock, conn = connect(port, ca, cert, key)
    ids = []
    for _ in range(130):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers("/upload", "POST"), end_stream=False)
        ids.append(sid)
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, Outcome(), lambda o: len(o.resets) >= 2, 10)
    # Finish the first stream's body: it is answered.
    conn.send_data(ids[0], b"hello", end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, out, lambda o: ids[0] in o.ended, 10)
    return out


def scenario_header_list(port, ca, cert, key):
    # Twice the 16 KiB limit in plain literals: refused with 431, the connection stays
    # usable.
    sock, conn = connect(port, ca, cert, key)
    big = [(f"x-big-{i}", "v" * 1600) for i in range(20)]
    conn.send_headers(1, request_headers("/big-head", extra=big), end_stream=True)
    conn.send_headers(3, request_headers("/after"), end_stream=True)
    sock.sendall(conn.data_to_send())
    return pump(sock, conn, Outcome(), lambda o: 3 in o.ended and (1 in o.ended or 1 in o.resets), 10)


def scenario_hpack_bomb(port, ca, cert, key):
    # One 4000-byte field in the dynamic table, then referenced 300 times (1 byte each):
    # 1.2 MB decoded from a few KB.
    sock, conn = connect(port, ca, cert, key)
    sock.sendall(conn.data_to_send())
    enc = hpack.Encoder()
    block = enc.encode(request_headers("/bomb") + [("x-bomb", "a" * 4000)] * 300)
    frame = HeadersFrame(1)
    frame.data = block
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    sock.sendall(frame.serialize())
    return wait_closed(sock, conn, Outcome())


def scenario_rapid_reset(port, ca, cert, key):
    sock, conn = connect(port, ca, cert, key)
    out = Outcome()
    for _ in range(500):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, request_headers("/reset"), end_stream=True)
        conn.reset_stream(sid, error_code=8)
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            out.closed = True
            break
    return wait_closed(sock, conn, out)


def scenario_continuation(port, ca, cert, key):
    sock, conn = connect(port, ca, cert, key)
    enc = hpack.Encoder()
    first = HeadersFrame(1)
    first.data = enc.encode(request_headers("/cont"))
    frames = [first.serialize()]
    for _ in range(200):
        frames.append(ContinuationFrame(1).serialize())
    out = Outcome()
    try:
        sock.sendall(b"".join(frames))
    except OSError:
        out.closed = True
    return wait_closed(sock, conn, out)


def flood(port, ca, cert, key, make):
    sock, conn = connect(port, ca, cert, key)
    out = Outcome()
    try:
        sock.sendall(b"".join(make(i) for i in range(2500)))
    except OSError:
        out.closed = True
    return wait_closed(sock, conn, out)


def scenario_settings_flood(port, ca, cert, key):
    return flood(port, ca, cert, key, lambda i: SettingsFrame(0).serialize())


def scenario_ping_flood(port, ca, cert, key):
    def ping(i):
        f = PingFrame(0)
        f.opaque_data = i.to_bytes(8, "big")
        return f.serialize()

    return flood(port, ca, cert, key, ping)


def scenario_window(port, ca, cert, key):
    # Every stream starts with a zero window. Stream 1 (1 MB) never gets any; stream 3
    # (100 KB) gets its window: it must complete while stream 1 waits, and stream 1 must be
    # reset once stream_idle_timeout passes.
    sock, conn = connect(
        port, ca, cert, key, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    conn.send_headers(1, request_headers("/download?bytes=1000000"), end_stream=True)
    conn.send_headers(3, request_headers("/download?bytes=100000"), end_stream=True)
    conn.increment_flow_control_window(4 << 20)
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, Outcome(), lambda o: 3 in o.status, 10)
    conn.increment_flow_control_window(200000, stream_id=3)
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    pump(sock, conn, out, lambda o: 3 in o.ended, 10)
    result = out.as_dict()
    result["stream3_done_after_s"] = round(time.monotonic() - started, 3)
    pump(sock, conn, out, lambda o: 1 in o.resets, 15)
    result.update({k: v for k, v in out.as_dict().items() if k in ("resets", "goaway", "closed")})
    return result


def scenario_idle(port, ca, cert, key):
    # A request body that never comes.
    sock, conn = connect(port, ca, cert, key)
    conn.send_headers(1, request_headers("/upload", "POST"), end_stream=False)
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    out = pump(sock, conn, Outcome(), lambda o: 1 in o.ended or 1 in o.resets, 15)
    result = out.as_dict()
    result["after_s"] = round(time.monotonic() - started, 3)
    return result


def scenario_revoke(port, ca, cert, key):
    sock, conn = connect(port, ca, cert, key)
    conn.send_headers(1, request_headers("/before"), end_stream=True)
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, Outcome(), lambda o: 1 in o.ended, 10)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    wait_closed(sock, conn, out, 10)
    result = out.as_dict()
    result["closed_after_s"] = round(time.monotonic() - started, 3)
    return result


def scenario_multiplex(port, ca, cert, key):
    # Twenty streams on one connection, answered out of order, bodies intact.
    sock, conn = connect(port, ca, cert, key)
    ids = []
    for i in range(20):
        sid = conn.get_next_available_stream_id()
        size = 1000 * (i + 1) * 37
        conn.send_headers(sid, request_headers(f"/download?bytes={size}"), end_stream=True)
        ids.append((sid, size))
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, Outcome(), lambda o: all(s in o.ended for s, _ in ids), 20)
    result = out.as_dict()
    result["expected"] = {str(s): n for s, n in ids}
    return result


class RecordingTls:
    """TLS 1.2 over memory BIOs on a real socket, keeping every ciphertext byte received so
    the TLS records can be counted (TLS 1.2: nothing but application data follows the
    handshake). Offers `recv`, `sendall` and `settimeout` like a socket, for `pump`."""

    def __init__(self, port, ca, cert, key):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["h2"])
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname=HOST)
        self.seen = bytearray()
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.raw.sendall(data)

    def _fill(self):
        data = self.raw.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.seen.extend(data)
        self.inc.write(data)

    def settimeout(self, t):
        self.raw.settimeout(t)

    def sendall(self, data):
        self.tls.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                self._fill()
            except ssl.SSLZeroReturnError:
                return b""


def tls_records(data):
    """(content type, length) of the TLS records in `data`."""
    records = []
    while len(data) >= 5:
        length = (data[3] << 8) | data[4]
        records.append([data[0], length])
        data = data[5 + length:]
    return records


def scenario_records(port, ca, cert, key):
    # Two small responses (the origin's echo of the request, a few KiB): each one's HEADERS
    # and DATA frames leave in a single TLS record.
    tls = RecordingTls(port, ca, cert, key)
    assert tls.tls.selected_alpn_protocol() == "h2", tls.tls.selected_alpn_protocol()
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    # The server's SETTINGS (and anything it sends with them) and its ACK of ours first.
    acked = []
    deadline = time.monotonic() + 10
    while not acked and time.monotonic() < deadline:
        tls.settimeout(max(deadline - time.monotonic(), 0.01))
        for ev in conn.receive_data(tls.recv(65536)):
            if isinstance(ev, h2.events.SettingsAcknowledged):
                acked.append(ev)
        pending = conn.data_to_send()
        if pending:
            tls.sendall(pending)
    out = Outcome()
    records = {}
    for path in ["/first", "/second"]:
        sid = conn.get_next_available_stream_id()
        mark = len(tls.seen)
        conn.send_headers(sid, request_headers(path), end_stream=True)
        tls.sendall(conn.data_to_send())
        pump(tls, conn, out, lambda o, sid=sid: sid in o.ended, 10)
        records[str(sid)] = tls_records(bytes(tls.seen[mark:]))
    result = out.as_dict()
    result["settings_acked"] = bool(acked)
    result["records"] = records
    return result


def scenario_slow_origin(port, ca, cert, key):
    # Stream 1 asks for /slow, which the origin holds until the test releases it. Once the
    # test saw /slow at the origin ("go"), stream 3 asks for /fast: it must be answered while
    # stream 1 still waits ("fast-done"); then the test releases /slow ("go" again).
    sock, conn = connect(port, ca, cert, key)
    conn.send_headers(1, request_headers("/slow"), end_stream=True)
    sock.sendall(conn.data_to_send())
    print("slow-sent", flush=True)
    sys.stdin.readline()
    conn.send_headers(3, request_headers("/fast"), end_stream=True)
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, Outcome(), lambda o: 3 in o.ended, 10)
    slow_ended_before_fast = 1 in out.ended
    print("fast-done", flush=True)
    sys.stdin.readline()
    out = pump(sock, conn, out, lambda o: 1 in o.ended, 10)
    result = out.as_dict()
    result["slow_ended_before_fast"] = slow_ended_before_fast
    return result


def main():
    scenario, port, ca, cert, key = sys.argv[1:6]
    run = globals()[f"scenario_{scenario}"]
    out = run(int(port), ca, cert, key)
    if isinstance(out, Outcome):
        out = out.as_dict()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
