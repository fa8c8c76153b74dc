#!/usr/bin/env python3
"""Turns the raw results of bench/compare/run.sh into a Markdown report, an SVG bar chart and
a JSON summary.

    compare.py --raw DIR --out PREFIX     (writes PREFIX.md, PREFIX.svg, PREFIX.json)

Raw files in DIR (written by run.sh):
  facts.json                          machine and run facts
  VARIANT.crypto.json                 the BoringSSL crypto bound (portcullis-crypto-bound)
  VARIANT.rate.json                   the fixed rate of the latency runs
  VARIANT.SERVER.TEST.json            a portcullis-loadtest --json summary (TEST: handshake,
                                      resume, keepalive, rate, rate-2, ...) or an h2load
                                      summary (h2, h2rate, h2rate-2, ...: h2load_summary.py)
  VARIANT.h2rate.json                 the fixed rate of the HTTP/2 latency runs
  VARIANT.SERVER.TEST.cpu.json        the server's CPU ticks during that run
  VARIANT.SERVER.idle.json            idle connections: opened, RSS before/after
  VARIANT.SERVER.probe.json           negotiated version / cipher / group / ALPN
The Markdown table is also printed on stdout.
"""
import argparse
import json
import math
import os
from html import escape

SERVER_ORDER = ["nginx", "haproxy", "portcullis", "portcullis-fn"]
LAG_P99_MS = float(os.environ.get("LAG_P99_MS", "0.5"))
LAG_MAX_MS = float(os.environ.get("LAG_MAX_MS", "10"))
FIXED_RATE = ("rate", "h2rate")
TEST_ORDER = ["handshake", "resume", "keepalive", "rate", "h2", "h2rate"]


def fixed_rate(runs, kind):
    """The p99 (ms) of the valid fixed-rate runs of `kind` (rate, h2rate): median, min, max,
    number valid, number run."""
    all_runs = [r for t, r in runs.items() if t.split("-")[0] == kind]
    valid = sorted(r.p("p99_us") / 1000.0 for r in all_runs if r.valid and r.p("p99_us") is not None)
    if not valid:
        return None, None, None, 0, len(all_runs)
    med = valid[len(valid) // 2] if len(valid) % 2 else (valid[len(valid) // 2 - 1] + valid[len(valid) // 2]) / 2
    return med, valid[0], valid[-1], len(valid), len(all_runs)


def fmt_fixed(t, base=None):
    med, lo, hi, n, total = t
    if med is None:
        return f"– (0/{total} valid)" if total else "–"
    text = f"{med:.2f} [{lo:.2f}–{hi:.2f}, {n}/{total} valid]"
    if base and base[0]:
        text += f" ({med / base[0]:.2f}×)"
    return text
VARIANT_TITLE = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Run:
    """One load-generator run and the server CPU it cost."""

    def __init__(self, summary, cpu):
        self.s = summary
        self.cpu = cpu

    @property
    def ok(self):
        return self.s is not None and self.done > 0

    @property
    def done(self):
        if not self.s:
            return 0
        return self.s.get("completed", self.s.get("succeeded", 0))

    @property
    def rate(self):
        if not self.ok:
            return None
        return self.s.get("ops_per_sec", self.s.get("req_per_sec"))

    @property
    def errors(self):
        if not self.s:
            return None
        return self.s.get("unexpected_errors", self.s.get("failed", 0))

    @property
    def lag(self):
        """The load generator's own schedule lag (p99, max) in µs, if measured."""
        lag = (self.s or {}).get("schedule_lag")
        return (lag["p99_us"], lag["max_us"]) if lag else None

    @property
    def valid(self):
        """A fixed-rate run is valid when its generator kept its schedule."""
        if not self.ok:
            return False
        if "valid" in self.s:
            return bool(self.s["valid"])
        return not self.invalid_because

    @property
    def invalid_because(self):
        """Why a fixed-rate run does not count (empty when it does)."""
        if self.s and "invalid_because" in self.s:
            return self.s["invalid_because"]
        lag = self.lag
        reasons = []
        if lag and lag[0] > LAG_P99_MS * 1000:
            reasons.append(f"schedule lag p99 {lag[0]} us > {LAG_P99_MS * 1000:.0f}")
        if lag and lag[1] > LAG_MAX_MS * 1000:
            reasons.append(f"schedule lag max {lag[1]} us > {LAG_MAX_MS * 1000:.0f}")
        return reasons

    @property
    def cpu_secs(self):
        if not self.cpu:
            return None
        return self.cpu["ticks"] / self.cpu["clk_tck"]

    @property
    def us_per_op(self):
        if not self.ok or self.cpu_secs is None:
            return None
        return self.cpu_secs * 1e6 / self.done

    @property
    def kernel_share(self):
        """The kernel's share (system time) of the server's CPU in this run, in percent; None
        for runs recorded before it was."""
        if not self.cpu or self.cpu.get("system_ticks") is None or not self.cpu.get("ticks"):
            return None
        return 100.0 * self.cpu["system_ticks"] / self.cpu["ticks"]

    @property
    def util(self):
        if self.cpu_secs is None or not self.cpu.get("wall_secs"):
            return None
        return 100.0 * self.cpu_secs / self.cpu["wall_secs"]

    def p(self, key):
        if not self.ok:
            return None
        return self.s["latency"].get(key)


def collect(raw):
    facts = load(os.path.join(raw, "facts.json")) or {}
    variants = {}
    for name in sorted(os.listdir(raw)):
        parts = name.split(".")
        if len(parts) >= 2 and parts[1] == "crypto":
            variants.setdefault(parts[0], {})
    data = {}
    for variant in variants:
        v = {
            "crypto": load(os.path.join(raw, f"{variant}.crypto.json")),
            "rate": load(os.path.join(raw, f"{variant}.rate.json")),
            "servers": {},
        }
        v["h2rate"] = load(os.path.join(raw, f"{variant}.h2rate.json"))
        present = {n.split(".")[1] for n in os.listdir(raw)
                   if n.startswith(variant + ".") and n.split(".")[1] not in ("crypto", "rate", "h2rate")}
        for server in [s for s in SERVER_ORDER if s in present] + sorted(present - set(SERVER_ORDER)):
            runs = {}
            tests = sorted({n.split(".")[2] for n in os.listdir(raw)
                            if n.startswith(f"{variant}.{server}.") and n.endswith(".cpu.json")},
                           key=lambda t: (TEST_ORDER.index(t.split("-")[0]) if t.split("-")[0] in TEST_ORDER
                                          else 99, t))
            for test in tests:
                if test.endswith("warmup"):
                    continue
                base = os.path.join(raw, f"{variant}.{server}.{test}")
                runs[test] = Run(load(base + ".json"), load(base + ".cpu.json"))
            v["servers"][server] = {
                "runs": runs,
                "idle": load(os.path.join(raw, f"{variant}.{server}.idle.json")),
                "probe": load(os.path.join(raw, f"{variant}.{server}.probe.json")),
                "bound": adjacent_bound(raw, variant, server),
            }
        data[variant] = v
    return facts, data


def adjacent_bound(raw, variant, server):
    """The crypto bound measured right before and after this server's handshake run, averaged
    (None when the run predates these measurements)."""
    samples = [load(os.path.join(raw, f"{variant}.{server}.bound-{when}.json"))
               for when in ("before", "after")]
    samples = [s for s in samples if s]
    if not samples:
        return None
    return {key: sum(s[key] for s in samples) / len(samples)
            for key in ("bound_us", "bound_hybrid_us")}


def fmt_num(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def ratio(x, base, digits=2):
    if x is None or base in (None, 0):
        return ""
    return f" ({x / base:.{digits}f}×)"


def idle_kib(idle):
    if not idle or not idle.get("opened"):
        return None
    return (idle["rss_after_kib"] - idle["rss_before_kib"]) / idle["opened"]


def bound_for(crypto, probe):
    """The crypto bound for the key exchange the server negotiated with the load generator."""
    if not crypto:
        return None
    if "MLKEM" in (probe or {}).get("group", "").upper():
        return crypto.get("bound_hybrid_us")
    return crypto.get("bound_us")


def main_table(variant, v, full):
    crypto = v["crypto"] or {}
    servers = v["servers"]
    base = servers.get("nginx")

    def base_val(fn):
        return fn(base) if base else None

    cols = ["server", "TLS group", "full handshakes/s", "server CPU µs / handshake",
            "CPU vs crypto bound", "resumed handshakes/s"]
    if full:
        cols += ["keep-alive requests/s", "p99 @ fixed rate (ms) [spread, valid runs]",
                 "HTTP/2 requests/s", "HTTP/2 p99 @ fixed rate (ms) [spread, valid runs]",
                 "KiB / idle TLS conn"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    getters = {
        "hs": lambda s: s["runs"]["handshake"].rate if "handshake" in s["runs"] else None,
        "cpu": lambda s: s["runs"]["handshake"].us_per_op if "handshake" in s["runs"] else None,
        "res": lambda s: s["runs"]["resume"].rate if "resume" in s["runs"] else None,
        "ka": lambda s: s["runs"]["keepalive"].rate if "keepalive" in s["runs"] else None,
        "h2": lambda s: s["runs"]["h2"].rate if "h2" in s["runs"] else None,
        "idle": lambda s: idle_kib(s["idle"]),
    }
    for name, s in servers.items():
        vals = {k: g(s) for k, g in getters.items()}
        bases = {k: base_val(g) for k, g in getters.items()}
        probe = s.get("probe") or {}
        bound = bound_for(s.get("bound") or crypto, probe)
        row = [
            f"**{name}**",
            probe.get("group", "?"),
            fmt_num(vals["hs"]) + ratio(vals["hs"], bases["hs"]),
            fmt_num(vals["cpu"], 1) + ratio(vals["cpu"], bases["cpu"]),
            (f"{100 * vals['cpu'] / bound:.0f} %" if vals["cpu"] and bound else "–"),
            fmt_num(vals["res"]) + ratio(vals["res"], bases["res"]),
        ]
        if full:
            base_runs = base["runs"] if base else {}
            row += [
                fmt_num(vals["ka"]) + ratio(vals["ka"], bases["ka"]),
                fmt_fixed(fixed_rate(s["runs"], "rate"), fixed_rate(base_runs, "rate")),
                fmt_num(vals["h2"]) + ratio(vals["h2"], bases["h2"]),
                fmt_fixed(fixed_rate(s["runs"], "h2rate"), fixed_rate(base_runs, "h2rate")),
                fmt_num(vals["idle"], 1) + ratio(vals["idle"], bases["idle"]),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cores_busy(cpu):
    """How busy the server's and the client's cores were during a run (and the origin's CPU
    time): which side bounded a saturation run. Empty for runs recorded before these fields."""
    if not cpu or cpu.get("server_core_busy") is None:
        return ""
    return (f"{100 * cpu['server_core_busy']:.0f} % / {100 * cpu['client_core_busy']:.0f} % "
            f"({cpu.get('origin_cpu_secs', 0):.1f})")


def detail_table(v):
    cols = ["server", "run", "ops/s", "errors", "server CPU util", "server CPU µs/op (kernel share)",
            "ops/s at 100 % of a core (1e6 / µs)",
            "cores busy: server / client (origin CPU s)", "p50 (ms)", "p99 (ms)", "p99.9 (ms)",
            "rate: service-time p99 (ms)", "rate: max send lag (ms)",
            "rate: generator schedule lag p99 / max (ms)", "rate: valid"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, s in v["servers"].items():
        for test, r in s["runs"].items():
            err = r.errors
            if r.s and r.s.get("errors"):
                kinds = ", ".join(
                    f"{e['kind']}{'(' + e['detail'] + ')' if e.get('detail') else ''}: {e['count']}"
                    for e in r.s["errors"] if not e.get("expected"))
                err = f"{err} ({kinds})" if kinds else err
            ms = lambda us: us / 1000 if us is not None else None  # noqa: E731
            svc = (r.s or {}).get("service_time") or {}
            lag = (r.s or {}).get("max_send_lag_us")
            lines.append("| " + " | ".join([
                name, test, fmt_num(r.rate), str(err if err is not None else "–"),
                (f"{r.util:.0f} %" if r.util is not None else "–"),
                fmt_num(r.us_per_op, 1)
                + (f" ({r.kernel_share:.0f} %)" if r.us_per_op and r.kernel_share is not None else ""),
                fmt_num(1e6 / r.us_per_op if r.us_per_op else None),
                cores_busy(r.cpu),
                fmt_num(ms(r.p("p50_us")), 2),
                fmt_num(ms(r.p("p99_us")), 2),
                fmt_num(ms(r.p("p999_us")), 2),
                fmt_num(ms(svc.get("p99_us")), 2) if svc else "",
                fmt_num(ms(lag), 1) if lag is not None else "",
                (f"{r.lag[0] / 1000:.2f} / {r.lag[1] / 1000:.2f}" if r.lag else ""),
                ("" if test.split("-")[0] not in FIXED_RATE else
                 ("yes" if r.valid else "**no** " + "; ".join(r.invalid_because))),
            ]) + " |")
    return "\n".join(lines)


def adjacent_lines(v):
    """One line per server: the bound measured next to its handshake run."""
    out = []
    for name, s in v["servers"].items():
        b = s.get("bound")
        if b:
            out.append(f"- bound next to {name}'s handshake run: {b['bound_us']:.1f} µs "
                       f"(X25519MLKEM768: {b['bound_hybrid_us']:.1f} µs)")
    return "\n".join(out) if out else "- (no adjacent bound measurements in this run)"


def crypto_lines(c):
    if not c:
        return "(not measured)"
    parts = [
        ("server CertificateVerify signature", c["server_sign_us"]),
        ("client CertificateVerify verification", c["client_cv_verify_us"]),
        ("client leaf signature verification", c["leaf_verify_us"]),
        ("intermediate signature verification", c["intermediate_verify_us"]),
        ("X25519 key generation", c["x25519_keygen_us"]),
        ("X25519 shared secret", c["x25519_derive_us"]),
    ]
    out = [f"| operation ({c['kind']}) | µs |", "|---|---|"]
    out += [f"| {n} | {u:.1f} |" for n, u in parts]
    out.append(f"| **bound (sum)** | **{c['bound_us']:.1f}** (≈ {1e6 / c['bound_us']:,.0f} handshakes/s per core) |")
    out.append(f"| *extra for X25519MLKEM768 (ML-KEM-768 parse + encapsulate)* | *{c['mlkem768_parse_encap_us']:.1f}* |")
    out.append(f"| *bound with X25519MLKEM768* | *{c['bound_hybrid_us']:.1f}* |")
    return "\n".join(out)


def svg_chart(data, facts):
    panels = []
    hs_series = [(f"full, {VARIANT_TITLE.get(k, k)}", k, "handshake") for k in data]
    res_series = [(f"resumed, {VARIANT_TITLE.get(k, k)}", k, "resume") for k in data]
    panels.append(("mTLS handshakes/s (1 server core)", hs_series + res_series))
    ka = [(f"keep-alive, {VARIANT_TITLE.get(k, k)}", k, "keepalive") for k in data
          if any("keepalive" in s["runs"] for s in data[k]["servers"].values())]
    if ka:
        panels.append(("proxied keep-alive requests/s (1 server core)", ka))
    servers = []
    for v in data.values():
        for s in v["servers"]:
            if s not in servers:
                servers.append(s)
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]
    pw, ph, top, left, bottom = 520, 320, 60, 70, 70
    width = left + len(panels) * (pw + 40)
    height = top + ph + bottom + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           f'{escape("nginx vs HAProxy vs Portcullis: viewer mTLS on one core, " + facts.get("date", ""))}</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">'
           f'{escape(facts.get("cpu_model", ""))}, {facts.get("nproc", "?")} CPUs; server on CPU '
           f'{facts.get("server_cpu", 0)}, load generator on CPU {facts.get("client_cpu", 1)}</text>']
    for pi, (title, series) in enumerate(panels):
        x0 = left + pi * (pw + 40)
        vals = []
        for _, variant, test in series:
            for s in servers:
                srv = data[variant]["servers"].get(s)
                r = srv["runs"].get(test) if srv else None
                vals.append(r.rate if r and r.rate else 0)
        vmax = max(vals + [1])
        mag = 10 ** math.floor(math.log10(vmax))
        step = next(m * mag for m in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10) if vmax / (m * mag) <= 6)
        ymax = step * math.ceil(vmax / step)
        out.append(f'<text x="{x0 + pw / 2}" y="{top - 6}" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
        y = 0.0
        while y <= ymax + 1e-9:
            py = top + ph - ph * y / ymax
            out.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x0 + pw}" y2="{py:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" fill="#555">{y:,.0f}</text>')
            y += step
        out.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + ph}" stroke="#333"/>')
        out.append(f'<line x1="{x0}" y1="{top + ph}" x2="{x0 + pw}" y2="{top + ph}" stroke="#333"/>')
        gw = pw / max(1, len(servers))
        bw = min(40, (gw - 20) / max(1, len(series)))
        for si, s in enumerate(servers):
            gx = x0 + si * gw + (gw - bw * len(series)) / 2
            for k, (label, variant, test) in enumerate(series):
                srv = data[variant]["servers"].get(s)
                r = srv["runs"].get(test) if srv else None
                val = r.rate if r and r.rate else 0
                h = ph * val / ymax
                bx = gx + k * bw
                out.append(f'<rect x="{bx:.1f}" y="{top + ph - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                           f'fill="{colors[k % len(colors)]}"><title>{escape(s)} {escape(label)}: {val:,.0f}/s</title></rect>')
                out.append(f'<text x="{bx + (bw - 2) / 2:.1f}" y="{top + ph - h - 4:.1f}" text-anchor="middle" '
                           f'font-size="10">{val / 1000:.1f}k</text>')
            out.append(f'<text x="{x0 + si * gw + gw / 2:.1f}" y="{top + ph + 18}" text-anchor="middle" '
                       f'font-weight="bold">{escape(s)}</text>')
        for k, (label, _, _) in enumerate(series):
            lx = x0 + 10 + (k % 2) * (pw / 2)
            ly = top + ph + 38 + (k // 2) * 16
            out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colors[k % len(colors)]}"/>')
            out.append(f'<text x="{lx + 18}" y="{ly}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True, help="output prefix (…/compare-YYYY-MM-DD)")
    args = ap.parse_args()
    facts, data = collect(args.raw)
    try:
        with open(os.path.join(args.raw, "loadavg_end.txt")) as f:
            facts["loadavg_end"] = f.read().strip()
    except OSError:
        pass

    md = [f"# nginx vs HAProxy vs Portcullis: viewer mTLS, side by side ({facts.get('date', '')})", ""]
    md += [
        "Generated by `bench/compare/run.sh` (see `bench/compare/README.md`). One server at a time, "
        f"pinned to CPU {facts.get('server_cpu', 0)} with one worker; the load generator "
        f"(`portcullis-loadtest`, `h2load`) on CPU {facts.get('client_cpu', 1)}, the shared nginx origin on "
        f"CPU {facts.get('origin_cpu', facts.get('client_cpu', 1))}. "
        "Same certificates, trust store (required client certificate, verify depth 4), TLS 1.3 only, "
        "keep-alive upstream connections. Ratios in parentheses are vs nginx."
        + (f" **Every server was capped at {facts['server_cpu_quota_pct']} % of one core** (cgroup CPU "
           f"quota, {facts.get('cpu_quota_period_us', 100000) // 1000} ms period): requests/s at saturation "
           "compare the servers' own CPU cost, not the origin's share of the server core."
           if facts.get("server_cpu_quota_pct") else ""),
        "",
        "## Machine",
        "",
        f"- date: {facts.get('date', '?')}",
        f"- nproc: {facts.get('nproc', '?')}; CPU: {facts.get('cpu_model', '?')}; memory: {facts.get('mem_total', '?')}",
        f"- kernel: {facts.get('kernel', '?')}",
        f"- nginx: {facts.get('nginx', '?')} ({facts.get('nginx_openssl', '')})",
        f"- haproxy: {facts.get('haproxy', '?')} ({facts.get('haproxy_openssl', '')})",
        f"- portcullis: {facts.get('portcullis', '?')}",
        f"- runs: {facts.get('bench_secs', '?')} s each; {facts.get('client_certs', '?')} client certificates; "
        f"handshake mode {facts.get('hs_threads', '?')} client threads; keep-alive/rate modes "
        f"{facts.get('ka_conns', '?')} connections; {facts.get('idle_conns', '?')} idle connections; "
        f"load average at start: {facts.get('loadavg_start', '?')}, at the end: {facts.get('loadavg_end', '?')}",
        "",
    ]
    summary = {"facts": facts, "variants": {}}
    for variant, v in data.items():
        full = any("keepalive" in s["runs"] for s in v["servers"].values())
        title = VARIANT_TITLE.get(variant, variant)
        md += [f"## {title}", ""]
        if v["rate"]:
            md += [f"Fixed rate for the HTTP/1.1 p99 column: {v['rate']['rate']:,} requests/s "
                   f"({100 * v['rate'].get('fraction', 0.5):.0f} % of {v['rate']['from']}'s keep-alive saturation rate), {facts.get('ka_conns', '?')} connections; "
                   "latency from the intended send time (coordinated-omission corrected). A run counts only "
                   f"if the load generator kept its own schedule (schedule lag p99 ≤ {LAG_P99_MS} ms and "
                   f"max ≤ {LAG_MAX_MS} ms); the column gives the median p99 of the valid runs, "
                   "[their min–max, valid/run].", ""]
        if v.get("h2rate"):
            md += [f"HTTP/2 rows: stock h2load (client certificate through `loadtest/h2load-client-cert`), "
                   f"{facts.get('h2_conns', '?')} connections × {facts.get('h2_streams', '?')} streams. "
                   f"Fixed rate {v['h2rate']['rate']:,} requests/s ({100 * v['h2rate'].get('fraction', 0.5):.0f} % of {v['h2rate']['from']}'s HTTP/2 "
                   "rate, `--rps` per client); h2load measures from the actual send (not corrected for "
                   "coordinated omission), so a run counts only if it achieved ≥ 97 % of the rate and its "
                   "start times stayed within the lag bounds of an even schedule (plus one client period).", ""]
        md += [main_table(variant, v, full), ""]
        fn, plain = v["servers"].get("portcullis-fn"), v["servers"].get("portcullis")
        if fn and plain and "handshake" in fn["runs"] and "handshake" in plain["runs"]:
            a, b = fn["runs"]["handshake"], plain["runs"]["handshake"]
            if a.rate and b.rate:
                cpu = (f"; server CPU per handshake {a.us_per_op:.1f} vs {b.us_per_op:.1f} µs "
                       f"({a.us_per_op - b.us_per_op:+.1f} µs)" if a.us_per_op and b.us_per_op else "")
                md += [f"Connection function (portcullis-fn: the announcement's function on a store of "
                       f"{facts.get('fn_kvs_keys', '?'):,} keys): full handshakes/s {a.rate:,.0f} vs {b.rate:,.0f} "
                       f"without, ratio {a.rate / b.rate:.3f}{cpu}.", ""]
        md += ["### Crypto bound (BoringSSL, CPU %s)" % facts.get("server_cpu", 0), "",
               "What one full mTLS handshake needs on the server, timed with `bench/compare/crypto-bound` "
               "(fastest of 5 rounds) at the start of the variant. *CPU vs crypto bound* in the table above is "
               "the server's measured CPU per handshake (incl. TCP accept, the proxied request and close) as a "
               "percentage of the bound measured again right before and after that server's handshake run "
               "(their mean; the shared machine's speed drifts), or of this sum when those are missing "
               "(X25519MLKEM768 sums for a server that negotiated the hybrid group).",
               "", crypto_lines(v["crypto"]), "", adjacent_lines(v), ""]
        md += ["### Every run", "", detail_table(v), ""]
        if full:
            md += ["Idle connections:", ""]
            for name, s in v["servers"].items():
                i = s["idle"]
                if i:
                    md.append(f"- {name}: {i['opened']:,} opened ({i['failed']} failed) in {i['elapsed_secs']} s; "
                              f"RSS {i['rss_before_kib']:,} KiB → {i['rss_after_kib']:,} KiB")
            md.append("")
        sv = {}
        for name, s in v["servers"].items():
            sv[name] = {
                "probe": s["probe"],
                "idle": s["idle"],
                "idle_kib_per_conn": idle_kib(s["idle"]),
                "runs": {t: {"ops_per_sec": r.rate, "errors": r.errors, "server_cpu_us_per_op": r.us_per_op,
                             "server_cpu_util_pct": r.util, "server_kernel_share_pct": r.kernel_share, "latency": r.s.get("latency") if r.s else None}
                         for t, r in s["runs"].items()},
            }
        summary["variants"][variant] = {"crypto": v["crypto"], "rate": v["rate"], "servers": sv}

    text = "\n".join(md)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".svg", "w") as f:
        f.write(svg_chart(data, facts))
    with open(args.out + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
