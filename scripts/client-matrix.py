#!/usr/bin/env python3
"""Tables of scripts/measure-client-matrix.sh, from each run's summary.json.

  client-matrix.py rows SCENARIO SETTINGS RUN_DIR   one Markdown row per client of one run
  client-matrix.py matrix OUT                       the matrix: a row per scenario, a column per
                                                    library, "defaults / recommended" per cell
"""

import json
import os
import sys

LIBRARIES = ["redis-py", "valkey-glide", "ioredis", "node-redis", "go-redis", "lettuce", "jedis", "redisson"]
SCENARIOS = [
    ("sentinel", "Sentinel, `SENTINEL FAILOVER`"),
    ("endpoint-lag", "endpoint (lag 3 s), `SENTINEL FAILOVER`"),
    ("cluster-failover", "cluster, `CLUSTER FAILOVER`"),
    ("cluster-kill", "cluster, `kill -9` of a primary"),
    ("sentinel-blackhole", "Sentinel, `blackhole=10s`"),
    ("cluster-blackhole", "cluster, `blackhole=10s`"),
]
GROUPS = ["native-a", "native-b", "jvm"]


def clients(run_dir):
    """The run's clients (of its one trial), or None when it left no summary."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    return json.load(open(path))["trials"][0]["clients"]


def late(c):
    return c["writes"].get("late", 0) + c.get("reads", {}).get("late", 0)


def figure(c):
    """Writes' longest outage, or that they never came back; lost acknowledged writes if any."""
    w, i = c["writes"], c.get("integrity", {})
    if w["recovered"]:
        text = f"{w['longest_outage_ms'] / 1000:.1f} s"
    else:
        text = "**never recovers**"
    lost = i.get("lost_acked_writes")
    if lost:
        text += f", lost {lost}"
    return text


def spread(runs):
    """failprobe's own client over a row's runs: the range of its outages and losses."""
    if not runs:
        return "?"
    if not all(c["writes"]["recovered"] for c in runs):
        return "**never recovers** in some runs"

    def span(values, unit=""):
        lo, hi = min(values), max(values)
        return f"{lo:g}{unit}" if lo == hi else f"{lo:g}–{hi:g}{unit}"

    text = span([round(c["writes"]["longest_outage_ms"] / 1000, 1) for c in runs], " s")
    lost = [c.get("integrity", {}).get("lost_acked_writes") or 0 for c in runs]
    return text + (f", lost {span(lost)}" if any(lost) else "")


def rows(scenario, settings, run_dir):
    found = clients(run_dir)
    if found is None:
        print(f"| {scenario} | {settings} | (no summary.json: see {run_dir}.log) | | | | |")
        return
    for c in found:
        name = c["name"] + (f" ({c['library']} {c['version']})" if c.get("library") else "")
        errors = ", ".join(f"{k} ×{v}" for k, v in sorted(c["writes"]["errors"].items(), key=lambda kv: -kv[1])[:3])
        lost = c.get("integrity", {}).get("lost_acked_writes", "?")
        print(f"| {scenario} | {settings} | {name} | {figure(c)} | {lost} | {errors} | {late(c)} |")


def matrix(out):
    cells, versions, reference = {}, {}, {}
    for scenario, _ in SCENARIOS:
        for group in GROUPS:
            for settings in ("defaults", "recommended"):
                found = clients(os.path.join(out, f"{scenario}-{group}-{settings}")) or []
                for c in found:
                    if c["name"] == "failprobe":
                        reference.setdefault(scenario, []).append(c)
                        continue
                    cells[(scenario, c["name"], settings)] = figure(c)
                    versions[c["name"]] = c.get("version", "?")
    header = ["lab, failover", "failprobe (each run)"] + [f"{lib} {versions.get(lib, '?')}" for lib in LIBRARIES]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for scenario, label in SCENARIOS:
        row = [label, spread(reference.get(scenario, []))]
        for lib in LIBRARIES:
            d, r = cells.get((scenario, lib, "defaults")), cells.get((scenario, lib, "recommended"))
            row.append("—" if d is None and r is None else f"{d or '?'} / {r or '?'}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "rows":
        rows(*sys.argv[2:5])
    else:
        matrix(sys.argv[2])
