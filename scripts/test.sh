#!/usr/bin/env bash
# Runs every test of heliograph on a fresh machine: installs what the tests need when it is
# missing, then builds the fuzz target and runs cargo's tests (unit, black-box, benches in test
# mode, doc tests). Two test threads: the machines have two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup: https://rustup.rs)" >&2
  exit 1
fi
# The black-box tests use `kill` (procps) to signal processes, strace to see the order of
# fsyncs, and the relay tests a real InfluxDB 1.x (Debian's `influxdb` package, 1.6.7) that they start on loopback themselves.
missing=()
command -v kill >/dev/null 2>&1 || missing+=(procps)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
# The durability test records the agent's directory fsyncs with strace.
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    # The package starts its own service on :8086 where it can; the tests need only the binary.
    (systemctl stop influxdb 2>/dev/null || service influxdb stop 2>/dev/null || true) >/dev/null 2>&1
  else
    echo "missing: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
# Optional: the unit file is checked with systemd-analyze verify where systemd installs (the test
# says it skipped otherwise).
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null 2>&1 \
    || echo "note: systemd could not be installed; the unit file check will be skipped" >&2
fi

# The fuzz target must keep compiling (run it with `cargo fuzz run line_protocol`).
CARGO_TARGET_DIR=target/fuzz cargo build --quiet --manifest-path fuzz/Cargo.toml

RUST_TEST_THREADS=2 cargo test --all-targets
cargo test --doc
