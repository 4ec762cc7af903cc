use std::path::PathBuf;

use super::*;

fn load_str(text: &str) -> Result<Config, ConfigErrors> {
    load_env(text, |_| None)
}

fn load_env(
    text: &str,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Config, ConfigErrors> {
    from_texts(&[(PathBuf::from("agent.toml"), text.to_owned())], env)
}

fn errors(text: &str) -> Vec<String> {
    load_str(text)
        .expect_err("config should be rejected")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_shipped_agent_toml_loads() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml")).unwrap();
    let config = load_str(&text).unwrap();
    // The listener, ten system inputs and internal; local buckets.
    assert_eq!(config.inputs.len(), 12);
    assert_eq!(config.outputs.len(), 1);
    assert_eq!(config.agent.metric_buffer_limit, 100_000);
}

#[test]
fn defaults_follow_telegraf() {
    let config = load_str("").unwrap();
    assert_eq!(config.agent.interval, ConfigDuration::secs(10));
    assert_eq!(config.agent.metric_batch_size, 1000);
    assert_eq!(config.agent.metric_buffer_limit, 10_000);
    assert!(config.agent.round_interval);
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = errors("[agent]\n  interval = \"10s\"\n  intervl = \"5s\"\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("agent.toml:3:3: [agent]: unknown field `intervl`"),
        "{}",
        e[0]
    );

    let e = errors("[[outputs.file]]\n  files = [\"stdout\"]\n\n  flies = 1\n");
    assert!(
        e[0].starts_with("agent.toml:4:3: [[outputs.file]]: unknown field `flies`"),
        "{}",
        e[0]
    );

    let e = errors("[[inputs.influxdb_listener]]\n[[inputs.influxdb_listener.token]]\nname = \"a\"\nsecret = \"s\"\ndatabases = [\"*\"]\nrate = 5\n");
    assert!(
        e[0].starts_with("agent.toml:6:1: [[inputs.influxdb_listener]]: unknown field `rate`"),
        "{}",
        e[0]
    );

    let e = errors("[agnt]\nx = 1\n");
    assert!(
        e[0].starts_with("agent.toml:1:2: unknown top-level key `agnt`"),
        "{}",
        e[0]
    );
}

#[test]
fn collects_every_problem_at_once() {
    let e = errors(
        "[agent]\nbogus = 1\n[[inputs.nope]]\n[[outputs.file]]\nfiles = []\n[[outputs.file]]\nalias = 5\n",
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[1].contains("unknown input plugin `nope`; known: influxdb_listener"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("agent.toml:4:1: [[outputs.file]]: `files` is empty"),
        "{}",
        e[2]
    );
    assert!(
        e[3].contains("agent.toml:7:9") && e[3].contains("invalid type"),
        "{}",
        e[3]
    );
}

#[test]
fn bad_values_are_explained() {
    let e = errors("[agent]\ninterval = \"10 parsecs\"\n");
    assert!(
        e[0].contains("agent.toml:2:12") && e[0].contains("unknown unit"),
        "{}",
        e[0]
    );
    let e = errors("[[inputs.influxdb_listener]]\nmax_body_size = \"lots\"\n");
    assert!(
        e[0].contains("agent.toml:2:17") && e[0].contains("invalid size"),
        "{}",
        e[0]
    );
    let e = errors("[inputs.influxdb_listener]\n");
    assert!(
        e[0].contains("write [[inputs.influxdb_listener]]"),
        "{}",
        e[0]
    );
    let e = errors("[agent\n");
    assert!(
        e[0].starts_with("agent.toml:1:") && e[0].contains("invalid TOML"),
        "{}",
        e[0]
    );
}

#[test]
fn environment_variables_are_substituted() {
    let text = "[[inputs.influxdb_listener]]\n[[inputs.influxdb_listener.token]]\nname = \"a\"\nsecret = \"${SECRET}\"\ndatabases = [\"${DB:-metrics}\"]\n";
    assert!(load_env(text, |v| (v == "SECRET").then(|| "s3".to_string())).is_ok());
    // Unset and no default: left as written, which the token table refuses as a secret.
    let e = load_env(text, |_| None).unwrap_err().to_string();
    assert!(
        e.contains("`secret` is ${SECRET}, an environment variable that is not set"),
        "{e}"
    );
}

#[test]
fn config_directory_files_add_plugins() {
    let config = from_texts(
        &[
            (
                PathBuf::from("agent.toml"),
                "[agent]\nflush_interval = \"1s\"\n".into(),
            ),
            (
                PathBuf::from("conf.d/10-out.toml"),
                "[[outputs.file]]\n".into(),
            ),
            (
                PathBuf::from("conf.d/20-bad.toml"),
                "[[outputs.file]]\nnope = 1\n".into(),
            ),
        ],
        |_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(config.starts_with("conf.d/20-bad.toml:2:1"), "{config}");
}
