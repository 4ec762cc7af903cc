# Shared by the bench scripts (sourced): a work dir, process cleanup, ports, and influxd.
# Expects `set -euo pipefail` in the caller.

command -v influxd >/dev/null || { apt-get update -qq && apt-get install -y -qq influxdb; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# start_influxd PORT: InfluxDB 1.x on 127.0.0.1:PORT with its data under $work; pid appended to pids.
start_influxd() {
  local rpc
  rpc=$(free_port)
  cat > "$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$work/influx/meta"
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$1"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
  influxd -config "$work/influxdb.conf" >"$work/influxd.log" 2>&1 & pids+=($!)
  wait_port "$1"
}
