#!/usr/bin/env bash
# The README's client matrix, measured again: each lab failover, every ready adapter once with its
# library's defaults and once with the settings its maintainers recommend for failover (the
# environment variables below; where they come from: docs/measurement.md, "Client libraries:
# defaults and recommended settings"). Needs root for the blackhole rows (nftables), the servers
# (scripts/install-servers.sh) and the adapters (adapters/install.sh). The adapters run in three
# groups (eight clients at once overload 2 cores: in a cluster, where each client probes every
# shard, five fell 6 % of their probes late), each with failprobe's own client as the reference.
# About 20 minutes; keeps every run's outputs in $OUT (default: a new directory under /tmp),
# prints one Markdown row per run and client, then the matrix, then `failprobe compare` of each
# defaults/recommended pair. A run already in $OUT (a complete summary.json) is not run again:
# delete its directory to measure it again.
#   scripts/measure-client-matrix.sh [SCENARIO...]   (default: every scenario below)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
failprobe="${FAILPROBE:-$root/target/release/failprobe}"
[ -x "$failprobe" ] || failprobe="$root/target/debug/failprobe"
OUT="${OUT:-$(mktemp -d /tmp/failprobe-matrix-XXXX)}"

# name → lab topology, trigger, more flags
# A SENTINEL FAILOVER's old primary steps down 2-3 s after the trigger: a 2 s settle could end the
# trial before it, with the writes it took not yet lost and READONLY not yet seen.
declare -A SCENARIO=(
  [sentinel]="sentinel sentinel --settle 5s"
  [endpoint-lag]="endpoint sentinel --endpoint-lag 3s --settle 5s"
  [cluster-failover]="cluster cluster-failover --settle 2s"
  [cluster-kill]="cluster kill --settle 2s"
  [sentinel-blackhole]="sentinel blackhole=10s --settle 5s"
  [cluster-blackhole]="cluster blackhole=10s --settle 2s"
)
ORDER=(sentinel endpoint-lag cluster-failover cluster-kill sentinel-blackhole cluster-blackhole)
[ $# -gt 0 ] && ORDER=("$@")

# The settings each library's maintainers recommend for failover (empty: nothing beyond its
# defaults; it is measured again, a second sample of its defaults).
declare -A RECOMMENDED=(
  [redis-py]="REDISPY_RETRIES=8 REDISPY_HEALTH_CHECK_INTERVAL=3"
  [valkey-glide]=""
  [ioredis]="IOREDIS_RECONNECT_ON_READONLY=true"
  [node-redis]="NODEREDIS_DISABLE_OFFLINE_QUEUE=true"
  [go-redis]="GOREDIS_MAX_RETRIES=5 GOREDIS_MIN_RETRY_BACKOFF=10ms GOREDIS_MAX_RETRY_BACKOFF=100ms"
  [lettuce]="LETTUCE_ADAPTIVE_REFRESH=true LETTUCE_ADAPTIVE_REFRESH_TIMEOUT=30000 LETTUCE_TCP_KEEPALIVE=5000,5000,3"
  [jedis]="JEDIS_POOL_MAX_WAIT=1000 JEDIS_POOL_TEST_WHILE_IDLE=true JEDIS_POOL_EVICTION_PERIOD=1000"
  [redisson]=""
)
GROUPS_=("redis-py valkey-glide ioredis" "node-redis go-redis" "lettuce jedis redisson")
GROUP_NAMES=(native-a native-b jvm)

run() { # scenario config(defaults|recommended) group-index
  local scenario="$1" config="$2" g="$3" clients=() spec topology trigger
  read -r topology trigger extra <<<"${SCENARIO[$scenario]} "
  for a in ${GROUPS_[$g]}; do
    # Valkey GLIDE has no Sentinel client.
    [ "$topology:$a" = sentinel:valkey-glide ] && continue
    spec="$root/adapters/$a/run"
    [ "$config" = recommended ] && [ -n "${RECOMMENDED[$a]}" ] && spec="env ${RECOMMENDED[$a]} $spec"
    clients+=(--clients "exec:$a=$spec")
  done
  local dir="$OUT/$scenario-${GROUP_NAMES[$g]}-$config"
  if [ -f "$dir/summary.json" ] && ! grep -q '"incomplete_reason"' "$dir/summary.json"; then
    python3 "$root/scripts/client-matrix.py" rows "$scenario" "$config" "$dir"
    return
  fi
  rm -rf "$dir"
  # shellcheck disable=SC2086 # $extra is flags
  FAILPROBE_HELLO_TIMEOUT=30s "$failprobe" run --lab-topology "$topology" --trigger "$trigger" $extra \
    --clients failprobe "${clients[@]}" --warmup 3s --max-trial 30s --quiet \
    --out "$dir" >"$dir.log" 2>&1 || true
  python3 "$root/scripts/client-matrix.py" rows "$scenario" "$config" "$dir"
}

echo "| scenario | settings | client | writes: longest outage | acked writes lost | errors (top 3) | late probes |"
echo "|---|---|---|---|---|---|---|"
for scenario in "${ORDER[@]}"; do
  for g in 0 1 2; do
    run "$scenario" defaults "$g"
    run "$scenario" recommended "$g"
  done
done
echo
python3 "$root/scripts/client-matrix.py" matrix "$OUT"
for scenario in "${ORDER[@]}"; do
  for g in 0 1 2; do
    a="$OUT/$scenario-${GROUP_NAMES[$g]}-defaults" b="$OUT/$scenario-${GROUP_NAMES[$g]}-recommended"
    [ -f "$a/summary.json" ] && [ -f "$b/summary.json" ] || continue
    echo
    echo "### $scenario, ${GROUP_NAMES[$g]}: A defaults, B recommended"
    echo '```'
    "$failprobe" compare "$a" "$b" --html "$OUT/compare-$scenario-${GROUP_NAMES[$g]}.html" 2>&1 || true
    echo '```'
  done
done
echo "outputs: $OUT" >&2
