#!/usr/bin/env bash
# A/B of durable ingest between two heliograph binaries (say, main's and a branch's), on the same
# load, alternating A and B so that the machine's drift falls on both: each run is a fresh agent
# with listener -> outputs.buckets, loaded by loadgen (unique points), its CPU counted until the
# backlog is compacted. Prints each pair and the median ratio B/A of lines per CPU-second.
#
# Usage: scripts/bench-ab.sh A_BIN B_BIN [PAIRS] [BATCH] [CONNECTIONS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1
B=$2
PAIRS=${3:-5}
BATCH=${4:-5000}
CONNS=${5:-4}
DURATION=${6:-8s}

cargo build --release --quiet --bin loadgen
source scripts/bench-lib.sh

# run BIN NAME: one agent, one load; appends "lines cpu_seconds" to $work/NAME.
run() {
  local p
  p=$(free_port)
  rm -rf "$work/data"
  cat > "$work/ab.toml" <<CONF
[agent]
  data_dir = "$work/data"
  quiet = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$p"
[[outputs.buckets]]
CONF
  "$1" --config "$work/ab.toml" & pids+=($!)
  wait_port "$p"
  local pid=${pids[-1]} before
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  target/release/loadgen "http://127.0.0.1:$p/write?db=load" --batch "$BATCH" \
    --connections "$CONNS" --duration "$DURATION" --unique --json > "$work/load.json"
  scripts/bench-wait.py line "http://127.0.0.1:$p/metrics" 'heliograph_buckets_pending_bytes 0' 60 || true
  local ticks
  ticks=$(( $(awk '{print $14 + $15}' "/proc/$pid/stat") - before ))
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$work/load.json" "$ticks" "$(getconf CLK_TCK)" >> "$work/$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lines = r["lines_per_sec"] * r["seconds"]
print(f"{lines:.0f} {int(sys.argv[2]) / int(sys.argv[3]):.3f} {r['p99_ms']:.1f}")
PY
}

for i in $(seq "$PAIRS"); do
  if (( i % 2 )); then run "$A" a; run "$B" b; else run "$B" b; run "$A" a; fi
done

python3 - "$work" <<'PY'
import statistics, sys
w = sys.argv[1]
rows = {n: [tuple(map(float, l.split())) for l in open(f"{w}/{n}")] for n in "ab"}
ratios = []
for i, (a, b) in enumerate(zip(rows["a"], rows["b"]), 1):
    la, lb = a[0] / a[1], b[0] / b[1]
    ratios.append(lb / la)
    print(f"pair {i}: A {la:10.0f} lines/cpu-s (p99 {a[2]:.1f} ms)  B {lb:10.0f} lines/cpu-s (p99 {b[2]:.1f} ms)  B/A {lb / la:.3f}")
print(f"median B/A lines per CPU-second: {statistics.median(ratios):.3f}")
PY
