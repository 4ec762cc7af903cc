#!/usr/bin/env bash
# Relay throughput: loadgen straight into InfluxDB 1.6.7, then the same load through heliograph
# (listener -> outputs.influxdb with its disk spool -> influxd), as pairs in one run.
# Relay throughput = points acknowledged / time until all of them are queryable upstream; the
# relay run sends as many points as the direct run of its pair got through. Each pair reports
# its ratio, and the run their median: this machine's speed drifts by tens of percent over
# minutes, so only the two runs of one pair are compared with each other.
#
# Usage: scripts/bench-relay.sh [BATCH] [CONNECTIONS] [DURATION] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-5000}
CONNS=${2:-4}
DURATION=${3:-10s}
PAIRS=${4:-5}

cargo build --release --quiet --bin heliograph --bin loadgen
BIN=target/release
source scripts/bench-lib.sh
WAIT=scripts/bench-wait.py

stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # name influxd-port url duration [loadgen options]
  local start end acked
  start=$(date +%s.%N)
  "$BIN/loadgen" "$3" --batch "$BATCH" --connections "$CONNS" --duration "$4" --unique --json "${@:5}" > "$work/$1.json"
  acked=$(python3 -c "import json; j=json.load(open('$work/$1.json')); print(round(j['lines_per_sec']*j['seconds']))")
  # Through the relay: first wait (cheaply) until its spool is empty, every batch answered 204
  # by influxd: a count scans every point, and polling it while influxd still ingests would
  # take CPU from the ingest being measured.
  if [ -n "${RELAY_METRICS:-}" ]; then
    "$WAIT" line "$RELAY_METRICS" 'heliograph_output_queued_points{output="outputs.influxdb"} 0'
  fi
  "$WAIT" count "$2" "$1" "$acked"
  end=$(date +%s.%N)
  echo "$acked $(python3 -c "print($end - $start)")" > "$work/$1.rate"
}

for pair in $(seq "$PAIRS"); do
  # Each run on a fresh influxd: otherwise its compaction of the other run's data competes for
  # the same two cores.
  rm -rf "$work/influx" "$work/data"
  ip=$(free_port); start_influxd "$ip"
  curl -s -XPOST "http://127.0.0.1:$ip/query" --data-urlencode "q=CREATE DATABASE direct" >/dev/null
  measure direct "$ip" "http://127.0.0.1:$ip/write?db=direct" "$DURATION"
  stop_last

  rm -rf "$work/influx"
  ip=$(free_port); start_influxd "$ip"
  curl -s -XPOST "http://127.0.0.1:$ip/query" --data-urlencode "q=CREATE DATABASE relay" >/dev/null
  hp=$(free_port)
  cat > "$work/relay.toml" <<CONF
[agent]
  data_dir = "$work/data"
  metric_batch_size = $BATCH
  metric_buffer_limit = 10000000
  flush_interval = "100ms"
  quiet = true
[[inputs.influxdb_listener]]
  service_address = "127.0.0.1:$hp"
[[outputs.influxdb]]
  urls = ["http://127.0.0.1:$ip"]
  database = "relay"
  max_in_flight = 4
CONF
  "$BIN/heliograph" --config "$work/relay.toml" & pids+=($!); wait_port "$hp"
  before=$(ticks "${pids[-1]}")
  # The same load: as many points as influxd took directly (heliograph takes them faster; a
  # duration-bound run would hand the relay a larger backlog than the direct run had).
  direct_points=$(cut -d' ' -f1 "$work/direct.rate")
  RELAY_METRICS="http://127.0.0.1:$hp/metrics" measure relay "$ip" "http://127.0.0.1:$hp/write?db=relay" 300s --points "$direct_points"
  echo "$(( $(ticks "${pids[-1]}") - before )) $(getconf CLK_TCK)" > "$work/relay.cpu"
  stop_last; stop_last

  python3 - "$work" "$pair" <<'PY' | tee -a "$work/pairs"
import sys
w, pair = sys.argv[1], sys.argv[2]
d = [float(x) for x in open(f"{w}/direct.rate").read().split()]
r = [float(x) for x in open(f"{w}/relay.rate").read().split()]
ticks, hz = (int(x) for x in open(f"{w}/relay.cpu").read().split())
print(f"pair {pair}: direct {d[0]:.0f} points in {d[1]:.1f} s ({d[0]/d[1]:.0f}/s); "
      f"relay in {r[1]:.1f} s ({r[0]/r[1]:.0f}/s), heliograph {ticks/hz:.2f} CPU-s "
      f"({ticks/hz/r[0]*1e6:.2f} us/point); ratio {(r[0]/r[1])/(d[0]/d[1]):.3f}")
PY
done

python3 - "$work/pairs" <<'PY'
import statistics, sys
ratios = [float(l.rsplit(" ", 1)[1]) for l in open(sys.argv[1])]
print(f"relay throughput vs direct: median {statistics.median(ratios):.2f}x of {len(ratios)} pairs "
      f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
PY
