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
# The black-box tests use `kill` (procps) to signal the agent.
if ! command -v kill >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq procps
fi

# The fuzz target must keep compiling (run it with `cargo fuzz run line_protocol`).
CARGO_TARGET_DIR=target/fuzz cargo build --quiet --manifest-path fuzz/Cargo.toml

RUST_TEST_THREADS=2 cargo test --all-targets
cargo test --doc
