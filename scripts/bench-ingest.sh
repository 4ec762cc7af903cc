#!/usr/bin/env bash
# Ingest comparison, all in one run on the same load (loadgen, unique points):
#   parse-only sink (influxdb-line-protocol parser, answers 204)
#   InfluxDB 1.6.7 /write (Debian package `influxdb`)
#   heliograph, listener -> outputs.file to /dev/null
#   heliograph, listener -> outputs.buckets (durable: 204 after fsync)
# Reports lines/s and lines per server CPU-second for each, and ratios.
#
# Usage: scripts/bench-ingest.sh [BATCH] [CONNECTIONS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-5000}
CONNS=${2:-4}
DURATION=${3:-10s}

cargo build --release --quiet --bin heliograph --bin loadgen --example parse_sink
BIN=target/release
source scripts/bench-lib.sh

run_load() { # name url pid
  "$BIN/loadgen" "$2" --batch "$BATCH" --connections "$CONNS" --duration "$DURATION" --unique --pid "$3" --json > "$work/$1.json"
  echo "$1: $(cat "$work/$1.json")" >&2
}

# 1. Parse-only sink.
p=$(free_port); "$BIN/examples/parse_sink" "127.0.0.1:$p" 2>/dev/null & pids+=($!); wait_port "$p"
run_load sink "http://127.0.0.1:$p/write?db=load" "${pids[-1]}"
kill "${pids[-1]}"

# 2. InfluxDB 1.6.7.
p=$(free_port); start_influxd "$p"
curl -s -XPOST "http://127.0.0.1:$p/query" --data-urlencode "q=CREATE DATABASE load" >/dev/null
run_load influxdb "http://127.0.0.1:$p/write?db=load" "${pids[-1]}"
kill "${pids[-1]}"

# 3. heliograph -> /dev/null.
p=$(free_port)
cat > "$work/null.toml" <<CONF
[agent]
  metric_batch_size = 10000
  metric_buffer_limit = 1000000
  flush_interval = "100ms"
  quiet = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$p"
[[outputs.file]]
  files = ["/dev/null"]
  buffer = "memory"
CONF
"$BIN/heliograph" --config "$work/null.toml" & pids+=($!); wait_port "$p"
run_load heliograph_null "http://127.0.0.1:$p/write?db=load" "${pids[-1]}"
kill "${pids[-1]}"

# 4. heliograph -> local buckets (durable).
p=$(free_port)
cat > "$work/buckets.toml" <<CONF
[agent]
  data_dir = "$work/data"
  quiet = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$p"
[[outputs.buckets]]
CONF
"$BIN/heliograph" --config "$work/buckets.toml" & pids+=($!); wait_port "$p"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
before=$(ticks "${pids[-1]}")
run_load heliograph_buckets "http://127.0.0.1:$p/write?db=load" "${pids[-1]}"
# The load generator counts the server's CPU while it sends; compaction may still be behind
# then. Also count it until every acknowledged line is compacted (bounded wait).
# (One polling process: a curl per poll would take CPU from the compaction being counted.)
scripts/bench-wait.py line "http://127.0.0.1:$p/metrics" 'heliograph_buckets_pending_bytes 0' 60 || true
echo "$(( $(ticks "${pids[-1]}") - before )) $(getconf CLK_TCK)" > "$work/drained.cpu"
kill "${pids[-1]}"

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
r = {n: json.load(open(f"{w}/{n}.json")) for n in ["sink", "influxdb", "heliograph_null", "heliograph_buckets"]}
print(f"{'target':22} {'lines/s':>12} {'lines/cpu-s':>12} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13}  statuses")
for n, x in r.items():
    print(f"{n:22} {x['lines_per_sec']:12.0f} {x['lines_per_server_cpu_second'] or 0:12.0f} {x['p50_ms']:8.1f} {x['p99_ms']:8.1f} {x['server_peak_rss_mib'] or 0:13.1f}  {x['statuses']}")
b, s, i = r["heliograph_buckets"], r["sink"], r["influxdb"]
print()
print(f"buckets lines/cpu-s vs parse-only sink: {b['lines_per_server_cpu_second'] / s['lines_per_server_cpu_second']:.2f}x")
print(f"buckets lines/s vs InfluxDB 1.6.7:      {b['lines_per_sec'] / i['lines_per_sec']:.2f}x")
print(f"buckets lines/cpu-s vs InfluxDB 1.6.7:  {b['lines_per_server_cpu_second'] / i['lines_per_server_cpu_second']:.2f}x")
print(f"null lines/cpu-s vs parse-only sink:    {r['heliograph_null']['lines_per_server_cpu_second'] / s['lines_per_server_cpu_second']:.2f}x")
ticks, hz = (int(v) for v in open(f"{w}/drained.cpu").read().split())
lines = b["lines_per_sec"] * b["seconds"]
drained = lines / (ticks / hz)
print(f"buckets lines/cpu-s counting the CPU until the backlog is compacted: {drained:.0f} "
      f"({drained / s['lines_per_server_cpu_second']:.2f}x the sink)")
PY
