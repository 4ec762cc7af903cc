//! The test harness: the real binary on a loopback port with a config and data dir in a temp
//! directory, and a small blocking HTTP client (ureq).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running heliograph, killed on drop.
pub struct TestAgent {
    pub child: Child,
    pub addr: String,
    pub dir: Arc<tempfile::TempDir>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_heliograph")
}

impl TestAgent {
    /// Starts the agent with `config`, where `{dir}` stands for the temp directory; waits until
    /// the listener logs its address.
    pub fn start(config: &str) -> TestAgent {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), config)
    }

    /// Starts the agent in an existing directory (to restart on the same data).
    pub fn start_in(dir: Arc<tempfile::TempDir>, config: &str) -> TestAgent {
        Self::start_with(dir, config, &[])
    }

    /// Starts the agent with extra environment variables.
    pub fn start_with(
        dir: Arc<tempfile::TempDir>,
        config: &str,
        env: &[(&str, String)],
    ) -> TestAgent {
        let config = config.replace("{dir}", dir.path().to_str().unwrap());
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                {
                    let _ = tx.send(addr.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "agent did not start listening; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        TestAgent {
            child,
            addr,
            dir,
            logs,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Lines of an output file (empty if it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        read_lines(&self.path(name))
    }

    /// Runs `heliograph export` on this agent's config; returns its lines (sorted as printed).
    pub fn export(&self, db: &str, extra: &[&str]) -> Vec<String> {
        let config = self.path("agent.toml");
        let mut args: Vec<std::ffi::OsString> =
            vec!["export".into(), "--config".into(), config.into_os_string()];
        args.extend(["--db", db].iter().chain(extra).map(Into::into));
        run_ok(&args, &[], Some(self.dir.path()))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Polls `f` until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A response, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or("").to_string();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    let mut body = String::new();
    response.into_reader().read_to_string(&mut body).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs `body` with `headers`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(req.send_bytes(body))
}

/// POSTs `body` with chunked transfer encoding (no Content-Length).
pub fn post_chunked(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(req.send(std::io::Cursor::new(body)))
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(req.call())
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Runs `heliograph check` on `config`; returns exit code, stdout and stderr.
pub fn check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary with `args` and `env` (in `cwd` when given); asserts it succeeded and
/// returns its standard output, line by line.
pub fn run_ok<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, String)],
    cwd: Option<&Path>,
) -> Vec<String> {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "heliograph {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
