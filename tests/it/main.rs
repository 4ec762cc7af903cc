//! Black-box tests: the real binary, loopback ports, real files, a real HTTP client.

mod harness;

mod buckets;
mod cli;
mod daemon;
mod disk_buffer;
mod hardening;
mod influxd;
mod listener;
mod load;
mod packaging;
mod processors;
mod relay;
mod reload;
mod system;
mod tls;
