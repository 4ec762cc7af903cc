//! The files in packaging/: the unit passes `systemd-analyze verify`, the config passes `check`.

use std::process::Command;

use crate::harness::{binary, run_ok};

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let available = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/heliograph.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("StateDirectory=heliograph"));
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heliograph.service");
    std::fs::write(&path, unit.replace("/usr/bin/heliograph", binary())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn packaged_config_passes_check() {
    // run_ok asserts the exit status.
    run_ok(
        &[
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/agent.toml"),
        ],
        &[],
        None,
    );
}
