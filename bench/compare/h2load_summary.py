#!/usr/bin/env python3
"""Summarises one h2load run for bench/compare/run.sh as one JSON line.

    h2load_summary.py --stdout FILE [--log FILE] --secs N [--target-rate R]

From h2load's standard output: requests per second, the request counts and the answers
other than 2xx (`not_2xx_total`, the whole run). From its
per-request log (--log-file: start time in microseconds since the epoch, status, duration in
microseconds, tab-separated): latency percentiles of the requests that started in the
measured window, and, for a fixed-rate run (--target-rate, requests per second over all
clients), the rate achieved and the load generator's schedule lag: how far the k-th request
started behind an even schedule at the target rate, relative to the median (its p99 and
maximum; each of the --clients clients runs its own timer, so one client period is allowed on
top of the bounds). h2load does not
correct for coordinated omission, so a run whose generator fell behind (lag above the bounds
in LAG_P99_MS / LAG_MAX_MS, or under 97 % of the target rate) is marked invalid.
"""
import argparse
import json
import os
import re
import sys


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stdout", required=True)
    ap.add_argument("--log")
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--target-rate", type=float, default=0)
    ap.add_argument("--clients", type=int, default=1)
    a = ap.parse_args()
    text = open(a.stdout).read()
    out = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not m:
        print(f"no 'finished in' line in h2load's output:\n{text[-2000:]}", file=sys.stderr)
        sys.exit(1)
    out["req_per_sec"] = float(m.group(1))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
    if m:
        out.update(total=int(m.group(1)), done=int(m.group(3)), succeeded=int(m.group(4)),
                   failed=int(m.group(5)))
    m = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        out["not_2xx_total"] = sum(int(n) for n in m.groups())
    out["protocol"] = "h2" if "Application protocol: h2" in text else "other"
    rows = []
    try:
        for line in open(a.log) if a.log else ():
            parts = line.split()
            if len(parts) >= 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    except OSError:
        pass
    if rows:
        rows.sort()
        t0 = rows[0][0]
        # Keep the measured window: the last `secs` seconds of starts (h2load may log its
        # warm-up second too).
        end = rows[-1][0]
        window = [r for r in rows if r[0] >= end - a.secs * 1e6]
        lat = sorted(r[2] for r in window)
        out["latency"] = {
            "count": len(lat),
            "p50_us": percentile(lat, 0.50),
            "p90_us": percentile(lat, 0.90),
            "p99_us": percentile(lat, 0.99),
            "p999_us": percentile(lat, 0.999),
            "max_us": lat[-1],
        }
        out["non_2xx"] = sum(1 for r in window if not 200 <= r[1] < 300)
        if a.target_rate > 0 and len(window) > 1:
            w0 = window[0][0]
            span = (window[-1][0] - w0) / 1e6
            out["target_rate"] = a.target_rate
            out["achieved_rate"] = round(len(window) / span, 1) if span > 0 else None
            step = 1e6 / a.target_rate
            raw = sorted((r[0] - w0) - k * step for k, r in enumerate(window))
            # Centred on the median: each client keeps its own timer, which h2load fires every
            # max(10 ms, 1 / per-client rate) and then sends what is due in a burst, so the
            # merged starts sit up to one such period off an even schedule even when nothing
            # is late; the bounds below allow that period.
            mid = percentile(raw, 0.5)
            lags = sorted(max(0.0, x - mid) for x in raw)
            out["schedule_lag"] = {"p99_us": round(percentile(lags, 0.99)), "max_us": round(lags[-1])}
            period = max(10_000.0, 1e6 * a.clients / a.target_rate)
            out["client_period_us"] = round(period)
            p99_bound = float(os.environ.get("LAG_P99_MS", "0.5")) * 1000 + period
            max_bound = float(os.environ.get("LAG_MAX_MS", "10")) * 1000 + period
            reasons = []
            if out["achieved_rate"] is not None and out["achieved_rate"] < 0.97 * a.target_rate:
                reasons.append(f"achieved {out['achieved_rate']} of {a.target_rate} req/s")
            if out["schedule_lag"]["p99_us"] > p99_bound:
                reasons.append(f"schedule lag p99 {out['schedule_lag']['p99_us']} us > {p99_bound:.0f}")
            if out["schedule_lag"]["max_us"] > max_bound:
                reasons.append(f"schedule lag max {out['schedule_lag']['max_us']} us > {max_bound:.0f}")
            out["valid"] = not reasons
            out["invalid_because"] = reasons
        del t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
