//! A real InfluxDB 1.x (`influxd`, Debian's `influxdb` package) on loopback, with its data in a
//! temp dir, for the relay tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{eventually, request};

pub struct Influxd {
    pub child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Influxd {
    /// Starts influxd; `max_body_size` limits `/write` bodies (0: InfluxDB's default).
    pub fn start(max_body_size: usize) -> Influxd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut d = Influxd {
            child: None,
            port,
            dir,
        };
        d.write_config(max_body_size);
        d.restart();
        d
    }

    fn write_config(&self, max_body_size: usize) {
        let p = self.dir.path().display();
        let rpc = free_port();
        let body = if max_body_size > 0 {
            format!("  max-body-size = {max_body_size}\n")
        } else {
            String::new()
        };
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{p}/meta\"\n[data]\n  dir = \"{p}/data\"\n  wal-dir = \"{p}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{}\"\n  log-enabled = false\n{body}[monitor]\n  store-enabled = false\n",
            self.port
        );
        std::fs::write(self.dir.path().join("influxdb.conf"), config).unwrap();
    }

    /// (Re)starts influxd on the same port and data.
    pub fn restart(&mut self) {
        let which = Command::new("sh")
            .args(["-c", "command -v influxd"])
            .output()
            .unwrap();
        assert!(which.status.success(), "influxd is not installed: run ./scripts/test.sh, which installs Debian's influxdb package");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url("/ping");
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect((
                "127.0.0.1",
                self.port
            ))
            .is_ok()
                && request("GET", &url, &[]).status == 204),
            "influxd did not start"
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, name: &str) {
        crate::harness::signal(self.child.as_ref().unwrap(), name);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Runs InfluxQL; returns the JSON.
    pub fn query(&self, q: &str, db: &str) -> serde_json::Value {
        let url = format!(
            "{}?{}",
            self.url("/query"),
            form_urlencoded::Serializer::new(String::new())
                .append_pair("q", q)
                .append_pair("db", db)
                .append_pair("epoch", "ns")
                .finish()
        );
        crate::harness::post(&url, &[], b"").json()
    }

    /// `SELECT count(FIELD) FROM M`, or 0.
    pub fn count(&self, db: &str, measurement: &str, field: &str) -> u64 {
        let j = self.query(
            &format!("SELECT count(\"{field}\") FROM \"{measurement}\""),
            db,
        );
        j["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}
