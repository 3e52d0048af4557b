#!/usr/bin/env bash
# The README's "silent failures" table, measured again: each network fault on the Sentinel lab,
# the endpoint lab and a cluster, for failprobe's own client, `pinned` and the ready adapters
# with their libraries' defaults. Needs root (nftables), the servers (scripts/install-servers.sh)
# and the adapters (adapters/install.sh). About 10 minutes; prints one Markdown row per run and
# client and keeps every run's outputs in $OUT (default: a new directory under /tmp).
#   scripts/measure-silent-failures.sh [ADAPTER...]   (default: every ready adapter)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
failprobe="${FAILPROBE:-$root/target/release/failprobe}"
[ -x "$failprobe" ] || failprobe="$root/target/debug/failprobe"
OUT="${OUT:-$(mktemp -d /tmp/failprobe-silent-XXXX)}"
[ $# -gt 0 ] || set -- redis-py ioredis valkey-glide go-redis node-redis

run() { # name topology trigger [flags...]
  local name="$1" topology="$2" trigger="$3" clients=()
  shift 3
  for a in "${ADAPTERS[@]}"; do
    # Valkey GLIDE has no Sentinel client.
    [ "$topology:$a" = sentinel:valkey-glide ] || clients+=(--clients "exec:$a=$root/adapters/$a/run")
  done
  "$failprobe" run --lab-topology "$topology" --trigger "$trigger" --clients failprobe,pinned "${clients[@]}" \
    --warmup 2s --settle 2s --max-trial 40s --quiet --out "$OUT/$name" "$@" >/dev/null 2>&1 || true
  python3 - "$OUT/$name/summary.json" "$topology" "$trigger $*" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = s["trials"][0]
for c in t["clients"]:
    w, i = c["writes"], c["integrity"]
    name = c["name"] + (f" ({c['library']} {c['version']})" if c.get("library") else "")
    errors = ", ".join(f"{k} ×{v}" for k, v in sorted(w["errors"].items(), key=lambda kv: -kv[1])[:3])
    if w["recovered"]:
        fate = f"{w['longest_outage_ms'] / 1000:.2f} s"
    else:
        fate = f"NOT RECOVERED ({w['outages'][-1]['duration_ms'] / 1000:.1f} s at the end)"
    lost = f"{i.get('lost_acked_writes', '?')} ({i.get('split_brain_writes', 0)} split-brain)"
    print(f"| {sys.argv[2]} | `{sys.argv[3].strip()}` | {name} | {fate} | {errors} | {lost} |")
PY
}

ADAPTERS=("$@")
echo "| lab | trigger | client | writes: longest outage | errors (top 3) | acked writes lost |"
echo "|---|---|---|---|---|---|"
run sentinel-blackhole sentinel blackhole=10s
run sentinel-partition sentinel partition=5s
run sentinel-partition-minrep sentinel partition=5s --min-replicas-to-write 1 --min-replicas-max-lag 1s
run sentinel-loss sentinel netem=loss=20%,for=10s
run endpoint-blackhole endpoint blackhole=10s
run endpoint-partition endpoint partition=5s
run cluster-blackhole cluster blackhole=10s
run cluster-partition cluster partition=5s
echo "outputs: $OUT" >&2
