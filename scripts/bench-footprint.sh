#!/usr/bin/env bash
# Footprint of the system inputs: heliograph against collectd, same host, same interval, same
# run. Usage: scripts/bench-footprint.sh [SECONDS] (default 60).
#
# heliograph runs cpu, mem, disk, diskio, net, system and processes every 10 s to a file;
# collectd runs cpu, memory, df, disk, interface, load and processes every 10 s to CSV files.
# Both start together and run the whole window; the ratios compare them in the same run.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/.."

command -v collectd >/dev/null || { apt-get update -qq && apt-get install -y -qq collectd-core; }
cargo build --release --quiet --bin heliograph
work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/collectd.conf" <<CONF
Interval 10
BaseDir "$work/collectd"
PIDFile "$work/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
LoadPlugin disk
LoadPlugin interface
LoadPlugin load
LoadPlugin processes
LoadPlugin csv
<Plugin csv>
  DataDir "$work/collectd/csv"
</Plugin>
CONF
mkdir -p "$work/collectd"

cat > "$work/heliograph.toml" <<CONF
[agent]
  interval = "10s"
  flush_interval = "10s"
  data_dir = "$work/heliograph"
  quiet = true
[[inputs.cpu]]
[[inputs.mem]]
[[inputs.disk]]
  ignore_fs = ["tmpfs", "devtmpfs", "devfs", "iso9660", "overlay", "aufs", "squashfs"]
[[inputs.diskio]]
[[inputs.net]]
[[inputs.system]]
[[inputs.processes]]
[[outputs.file]]
  files = ["$work/heliograph.lp"]
  buffer = "memory"
CONF

# Both run side by side. CPU time is read from every thread's se.sum_exec_runtime
# (/proc/PID/task/TID/sched, ns precision; /proc/PID/stat and rusage only count in 10 ms ticks
# on some kernels), sampled every 200 ms so threads that exit are still counted; peak RSS is
# VmHWM just before the end.
python3 - "$seconds" "$work" <<'PY'
import glob, os, signal, subprocess, sys, time
seconds, work = int(sys.argv[1]), sys.argv[2]
procs = {
    "heliograph": subprocess.Popen(["./target/release/heliograph", "--config", f"{work}/heliograph.toml"],
                                   stdout=open(f"{work}/heliograph.log", "w"), stderr=subprocess.STDOUT),
    "collectd": subprocess.Popen(["collectd", "-f", "-C", f"{work}/collectd.conf"],
                                 stdout=open(f"{work}/collectd.log", "w"), stderr=subprocess.STDOUT),
}
threads = {name: {} for name in procs}  # tid -> ms of CPU, last seen

def sample():
    for name, p in procs.items():
        for path in glob.glob(f"/proc/{p.pid}/task/*/sched"):
            try:
                text = open(path).read()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("se.sum_exec_runtime"):
                    threads[name][path] = float(line.split(":")[1])

end = time.monotonic() + seconds
while time.monotonic() < end:
    sample()
    time.sleep(0.2)
sample()
usage = {}
for name, p in procs.items():
    hwm = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM:"))
    usage[name] = (sum(threads[name].values()) / 1000, hwm / 1024)
    p.send_signal(signal.SIGTERM)
    p.wait()
lines = sum(1 for _ in open(f"{work}/heliograph.lp")) if os.path.exists(f"{work}/heliograph.lp") else 0
print(f"over {seconds}s at a 10s interval (heliograph wrote {lines} lines):")
print(f"{'':11} {'CPU s':>10} {'peak RSS':>12}")
for name, (cpu, rss) in usage.items():
    print(f"{name:11} {cpu:10.4f} {rss:8.1f} MiB")
(hc, hr), (cc, cr) = usage["heliograph"], usage["collectd"]
print(f"ratio heliograph/collectd: CPU {hc / cc:.2f}x, peak RSS {hr / cr:.2f}x")
PY
