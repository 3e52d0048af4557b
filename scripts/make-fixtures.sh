#!/usr/bin/env bash
# Regenerates tests/fixtures from real runs on local labs (not part of CI: the fixtures are
# committed so that report tests need no servers).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q
FP=target/debug/failprobe
F=tests/fixtures
T=$(mktemp -d)
rm -rf $F && mkdir -p $F
keep() { # dir name
  mkdir -p $F/$2
  cp $T/$1/run.json $T/$1/samples.csv $T/$1/events.jsonl $F/$2/
}
$FP run --lab-topology replica --trigger none --warmup 1s --duration 2s --interval 20ms --quiet --out $T/clean > /dev/null || true
keep clean clean-observation
$FP run --lab-topology replica --trigger kill --warmup 1s --max-trial 2s --settle 1s --interval 20ms --quiet --out $T/kill > /dev/null || true
keep kill unrecovered-kill
for i in 1 2 3 4 5; do
  rm -rf $T/sentinel
  $FP run --lab-topology sentinel --trigger sentinel --warmup 1s --settle 1s --interval 10ms --quiet --out $T/sentinel > /dev/null || true
  lost=$(python3 -c "import json;print(json.load(open('$T/sentinel/summary.json'))['trials'][0]['integrity']['lost_acked_writes'])")
  echo "sentinel try $i: lost $lost"
  [ "$lost" -gt 0 ] && break
done
keep sentinel sentinel-lost-writes
$FP run --lab-topology cluster --trigger cluster-failover --shard 1 --warmup 1s --settle 1s --interval 20ms --quiet --out $T/cluster > /dev/null || true
keep cluster cluster-failover
du -sh $F/*
