#!/usr/bin/env bash
# Relay throughput: loadgen straight into InfluxDB 1.6.7, then the same load through heliograph
# (listener -> outputs.influxdb with its disk spool -> the same influxd), in one run.
# Relay throughput = points acknowledged / time until all of them are queryable upstream; the
# relay run sends as many points as the direct run got through.
#
# Usage: scripts/bench-relay.sh [BATCH] [CONNECTIONS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-5000}
CONNS=${2:-4}
DURATION=${3:-10s}

cargo build --release --quiet --bin heliograph --bin loadgen
BIN=target/release
source scripts/bench-lib.sh

ip=$(free_port); start_influxd "$ip"
for db in direct relay; do curl -s -XPOST "http://127.0.0.1:$ip/query" --data-urlencode "q=CREATE DATABASE $db" >/dev/null; done

count() { curl -s "http://127.0.0.1:$ip/query" --data-urlencode "db=$1" --data-urlencode "q=SELECT count(usage_user) FROM cpu" \
  | python3 -c 'import json,sys; j=json.load(sys.stdin); s=j["results"][0].get("series"); print(s[0]["values"][0][1] if s else 0)'; }

measure() { # name url duration [loadgen options]
  local start=$(date +%s.%N)
  "$BIN/loadgen" "$2" --batch "$BATCH" --connections "$CONNS" --duration "$3" --unique --json "${@:4}" > "$work/$1.json"
  local acked=$(python3 -c "import json; j=json.load(open('$work/$1.json')); print(round(j['lines_per_sec']*j['seconds']))")
  # Through the relay: wait (cheaply) until its spool is empty, every batch answered 204 by
  # influxd, before counting: a count scans every point, and polling it while influxd is still
  # ingesting would take CPU from the ingest being measured.
  if [ -n "${RELAY_METRICS:-}" ]; then
    for _ in $(seq 3000); do
      curl -s "$RELAY_METRICS" | grep -q '^heliograph_output_queued_points{output="outputs.influxdb"} 0$' && break
      sleep 0.1
    done
  fi
  for _ in $(seq 600); do [ "$(count "$1")" -ge "$acked" ] && break; sleep 0.2; done
  local end=$(date +%s.%N)
  python3 -c "print(f'$1: {$acked} points acknowledged, all queryable after {$end-$start:.1f}s: {$acked/($end-$start):.0f} points/s')" | tee -a "$work/summary"
  echo "$acked $(python3 -c "print($end-$start)")" > "$work/$1.rate"
}

measure direct "http://127.0.0.1:$ip/write?db=direct" "$DURATION"

# A fresh influxd for the relay run: otherwise its compaction of the direct run's data competes
# with the relay's writes for the same two cores.
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
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
# The same load: as many points as influxd took directly (heliograph takes them faster; a
# duration-bound run would hand the relay a larger backlog than the direct run had).
direct_points=$(cut -d' ' -f1 "$work/direct.rate")
RELAY_METRICS="http://127.0.0.1:$hp/metrics" measure relay "http://127.0.0.1:$hp/write?db=relay" 300s --points "$direct_points"

python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
d = [float(x) for x in open(f"{w}/direct.rate").read().split()]
r = [float(x) for x in open(f"{w}/relay.rate").read().split()]
print(f"relay throughput vs direct: {(r[0]/r[1])/(d[0]/d[1]):.2f}x")
PY
