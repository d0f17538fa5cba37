#!/usr/bin/env python3
"""Summarizes scripts/bench-compare.sh results: min/median/max per server and
per figure, and ratios computed within each round (ours/peer, ours/noauth)."""
import statistics
import sys
from collections import defaultdict

rows = []
for line in open(sys.argv[1]):
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    rows.append(fields)

def figure(mode, value):
    """{round: {server: value}} over the rows of `mode`; `value` is a field's
    name, or a function of the row that answers None for a row without it."""
    get = value if callable(value) else (lambda r: float(r[value]) if value in r else None)
    by = defaultdict(dict)
    for r in rows:
        if r.get("mode") == mode and get(r) is not None:
            by[r["round"]][r["server"]] = get(r)
    return by

def servers_of(by):
    return sorted({s for r in by.values() for s in r})

def values(by, server):
    return [r[server] for r in by.values() if server in r]

def print_ratios(by, pairs, what="", unit=""):
    """num/den within each round, min / median / max, for each pair that ran."""
    for num, den in pairs:
        ratios = [r[num] / r[den] for r in by.values() if num in r and den in r and r[den] > 0]
        if ratios:
            print(f"  {num}/{den}{what}: {min(ratios):.2f}x / {statistics.median(ratios):.2f}x / {max(ratios):.2f}x{unit} (per-round ratios)")

def cpu_per_cycle(r):
    """The server's CPU per cycle in µs, where the run recorded it."""
    if "server_cpu_ms" in r and float(r.get("cycles", 0)) > 0:
        return float(r["server_cpu_ms"]) * 1000 / float(r["cycles"])
    return None

def spread(values):
    return [min(values), statistics.median(values), max(values)]

def mmm(values):
    return f"{min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}"

figures = [
    ("handshake", "cycles_per_s", "handshake cycles/s"),
    ("cold", "cycles_per_s", "handshake cycles/s, every token cold"),
    ("fanout", "deliveries_per_s", "fan-out deliveries/s"),
]
for mode, key, label in figures:
    by = figure(mode, key)
    if not by:
        continue
    servers = servers_of(by)
    print(f"\n{label} (min / median / max over {len(by)} rounds)")
    for s in servers:
        print(f"  {s:8} {mmm(values(by, s))}")
    print_ratios(by, [("ours", "daphne"), ("ours", "uvicorn"), ("ours", "noauth"), ("ours", "base"), ("ours", "lean")])
    cpu = figure(mode, cpu_per_cycle) if mode in ("handshake", "cold") else {}
    if cpu:
        print(f"  server CPU per cycle, user + system, µs (min / median / max)")
        for s in servers_of(cpu):
            print(f"  {s:8} " + " / ".join(f"{v:.1f}" for v in spread(values(cpu, s))))
        print_ratios(cpu, [("ours", "noauth"), ("ours", "base"), ("ours", "lean")], what=" CPU")
    if mode == "fanout":
        for r in rows:
            if r.get("mode") == "fanout" and r.get("lost", "0") != "0":
                print(f"  lost: round {r['round']} {r['server']} lost {r['lost']} of {int(r['receivers']) * int(r['messages'])}")
        for s in servers:
            p99 = [float(r["p99_ms"]) for r in rows if r.get("mode") == "fanout" and r["server"] == s]
            p50 = [float(r["p50_ms"]) for r in rows if r.get("mode") == "fanout" and r["server"] == s]
            print(f"  {s:8} delivery latency p50 {statistics.median(p50):.1f} ms, p99 {statistics.median(p99):.1f} ms (medians)")
storms = figure("storm", "all_joined_seconds")
if storms:
    print(f"\njoin storm, seconds until all joined (min / median / max over {len(storms)} rounds)")
    for s in servers_of(storms):
        print(f"  {s:8} " + " / ".join(f"{v:.3f}" for v in spread(values(storms, s))))
    print_ratios(storms, [("ours", "lean"), ("ours", "noauth"), ("ours", "base")], unit=" the time")
    for r in rows:
        if r.get("mode") == "storm" and r.get("notices") != r.get("expected"):
            print(f"  notices missing: {r['round']} {r['server']} {r.get('notices')} of {r.get('expected')}")
for r in rows:
    if r.get("mode") in ("hold", "storm"):
        print(" ".join(f"{k}={v}" for k, v in r.items()))
