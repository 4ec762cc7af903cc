//! The command line: `check`, and how a bad config is reported.

use std::process::Command;

use crate::harness::{binary, check, run_ok};

#[test]
fn check_accepts_the_shipped_config() {
    let out = run_ok(
        &[
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml"),
        ],
        &[],
        None,
    );
    assert!(out
        .concat()
        .contains("ok (12 inputs, 0 processors, 1 outputs)"));
}

#[test]
fn check_names_file_line_and_key() {
    let (code, _, stderr) = check("[agent]\n  flush_interval = \"1s\"\n\n[[outputs.file]]\n  files = [\"stdout\"]\n  colour = \"blue\"\n");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("agent.toml:6:3: [[outputs.file]]: unknown field `colour`"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let out = Command::new(binary())
        .args(["check", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/agent.toml"));
}

#[test]
fn config_directory_adds_plugins_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("agent.toml");
    std::fs::write(&main, "[agent]\n").unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(conf_d.join("10-file.toml"), "[[outputs.file]]\n").unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&main)
        .arg("--config-directory")
        .arg(&conf_d)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 outputs"));
    std::fs::write(
        conf_d.join("20-bad.toml"),
        "[[outputs.file]]\nfile = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&main)
        .arg("--config-directory")
        .arg(&conf_d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20-bad.toml:2:1") && stderr.contains("unknown field `file`"),
        "{stderr}"
    );
}

#[test]
fn test_mode_exits_zero_without_writing_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let out_file = dir.path().join("out.lp");
    std::fs::write(
        &path,
        format!(
            "[[outputs.file]]\nfiles = [{:?}]\n",
            out_file.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("--test")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out_file.exists());
}

#[test]
fn refuses_to_run_without_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[[inputs.influxdb_listener]]\nservice_address = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[outputs.*]] configured"));
}
