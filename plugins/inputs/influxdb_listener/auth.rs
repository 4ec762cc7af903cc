//! Token auth for the listener: credentials from `Authorization: Token S`, Basic auth (the
//! password is the secret) or `?u=…&p=S`; each token limited to some databases and, optionally,
//! a rate of points per second.
//!
//! No credentials: 403. An unknown secret, or a database the token may not write: 401. Secrets
//! are compared in constant time and never logged; tokens appear in logs by name.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::super::super::BuildError;

/// What users may write under `[[inputs.influxdb_listener.token]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for logs and metrics; never the secret.
    pub name: String,
    /// The secret clients send.
    pub secret: String,
    /// Databases this token may write; `"*"` for any.
    pub databases: Vec<String>,
    /// Points per second this token may write; over it, 429 with Retry-After.
    pub max_points_per_second: Option<u64>,
    /// What the token may do in its databases: `write`, `read` (SHOW and SELECT), `manage`
    /// (CREATE / ALTER / DROP of databases, retention policies and series). Default
    /// `["write", "read"]`.
    pub permissions: Option<Vec<Permission>>,
}

/// What a token may do in its databases (`permissions = ["write", "read", "manage"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// `POST /write`, `/api/v2/write`.
    Write,
    /// SHOW statements and SELECT on `/query`.
    Read,
    /// CREATE / ALTER / DROP of databases, retention policies, measurements and series.
    Manage,
}

impl Permission {
    fn bit(self) -> u8 {
        match self {
            Permission::Write => 1,
            Permission::Read => 2,
            Permission::Manage => 4,
        }
    }

    /// The verb for messages: "write", "read", "manage".
    pub fn verb(self) -> &'static str {
        match self {
            Permission::Write => "write",
            Permission::Read => "read",
            Permission::Manage => "manage",
        }
    }
}

/// A checked token.
pub struct Token {
    /// The token's name.
    pub name: String,
    secret: Vec<u8>,
    any_db: bool,
    databases: BTreeSet<String>,
    /// [`Permission`] bits.
    permissions: u8,
    limiter: Option<Mutex<Limiter>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Token")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Checks the token table: names and secrets present and unique.
pub fn build(configs: Vec<TokenConfig>) -> Result<Vec<Token>, BuildError> {
    let mut tokens: Vec<Token> = Vec::with_capacity(configs.len());
    for c in configs {
        if c.name.is_empty() {
            return Err(BuildError::new(
                "a [[inputs.influxdb_listener.token]] has an empty `name`",
            ));
        }
        if c.secret.is_empty() {
            return Err(BuildError::new(format!(
                "token {:?} has an empty `secret` (is its environment variable set?)",
                c.name
            )));
        }
        if c.secret.starts_with("${") && c.secret.ends_with('}') {
            // An unset variable is left as written: never let its name become a secret.
            return Err(BuildError::new(format!(
                "token {:?}: `secret` is {}, an environment variable that is not set",
                c.name, c.secret
            )));
        }
        if c.databases.is_empty() {
            return Err(BuildError::new(format!(
                "token {:?} lists no `databases`; use [\"*\"] for any",
                c.name
            )));
        }
        if tokens.iter().any(|t| t.name == c.name) {
            return Err(BuildError::new(format!(
                "two tokens are named {:?}",
                c.name
            )));
        }
        if tokens
            .iter()
            .any(|t| bool::from(t.secret.ct_eq(c.secret.as_bytes())))
        {
            return Err(BuildError::new(format!(
                "token {:?} has the same secret as another token",
                c.name
            )));
        }
        if c.max_points_per_second == Some(0) {
            return Err(BuildError::new(format!(
                "token {:?}: `max_points_per_second` must be at least 1",
                c.name
            )));
        }
        let permissions = c
            .permissions
            .as_deref()
            .unwrap_or(&[Permission::Write, Permission::Read])
            .iter()
            .fold(0, |bits, p| bits | p.bit());
        if permissions == 0 {
            return Err(BuildError::new(format!(
                "token {:?} lists no `permissions`; it could do nothing",
                c.name
            )));
        }
        let (any_db, databases) = super::databases_of(&c.databases);
        tokens.push(Token {
            name: c.name,
            secret: c.secret.into_bytes(),
            any_db,
            databases,
            permissions,
            limiter: c
                .max_points_per_second
                .map(|rate| Mutex::new(Limiter::new(rate))),
        });
    }
    Ok(tokens)
}

impl Token {
    /// Whether `db` is one of this token's databases.
    pub fn allows(&self, db: &str) -> bool {
        self.any_db || self.databases.contains(db)
    }

    /// Whether this token has `permission` at all.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
    }

    /// Whether this token may do `permission` in `db`.
    pub fn may(&self, permission: Permission, db: &str) -> bool {
        self.has(permission) && self.allows(db)
    }

    /// Takes `points` from the token's rate, or says why not.
    ///
    /// # Errors
    /// [`OverRate::Wait`] until the request would fit, [`OverRate::Never`] when it is larger
    /// than the token may send at once.
    pub fn admit(&self, points: usize) -> Result<(), OverRate> {
        match &self.limiter {
            None => Ok(()),
            Some(l) => l
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(points as f64, Instant::now()),
        }
    }
}

/// Why a request is over its token's rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OverRate {
    /// It fits after this wait (429; Retry-After is this, rounded up).
    Wait(Duration),
    /// It holds more points than the token may send in a second: it never fits (413).
    Never {
        /// The token's `max_points_per_second`.
        rate: u64,
    },
}

/// A token bucket holding one second of the rate. A request takes its points from it when they
/// are there; otherwise it is refused with the time until they will be, taking nothing (a
/// refused request never delays the next). A request larger than the bucket can never fit.
#[derive(Debug)]
struct Limiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    fn new(rate: u64) -> Self {
        Limiter {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self, points: f64, now: Instant) -> Result<(), OverRate> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if points > self.rate {
            return Err(OverRate::Never {
                rate: self.rate as u64,
            });
        }
        if points > self.tokens {
            return Err(OverRate::Wait(Duration::from_secs_f64(
                (points - self.tokens) / self.rate,
            )));
        }
        self.tokens -= points;
        Ok(())
    }
}

/// Why a request is not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all (403).
    Missing,
    /// Credentials that match no token (401).
    Unknown,
}

/// Finds the token whose secret the request carries.
///
/// # Errors
/// [`AuthError::Missing`] without credentials, [`AuthError::Unknown`] when none matches.
pub fn authenticate<'t>(
    tokens: &'t [Token],
    headers: &HeaderMap,
    password_param: Option<&str>,
) -> Result<&'t Token, AuthError> {
    let secret = match headers.get(AUTHORIZATION).map(|v| v.as_bytes()) {
        Some(v) if v.starts_with(b"Token ") => v[6..].to_vec(),
        Some(v) if v.len() > 6 && v[..6].eq_ignore_ascii_case(b"basic ") => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim_ascii())
                .map_err(|_| AuthError::Unknown)?;
            match decoded.iter().position(|b| *b == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return Err(AuthError::Unknown),
            }
        }
        Some(_) => return Err(AuthError::Unknown),
        None => match password_param {
            Some(p) if !p.is_empty() => p.as_bytes().to_vec(),
            _ => return Err(AuthError::Missing),
        },
    };
    let mut found = None;
    // Compare against every token so the time taken does not tell which one matched.
    for t in tokens {
        if bool::from(t.secret.ct_eq(&secret)) {
            found = Some(t);
        }
    }
    found.ok_or(AuthError::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<Token> {
        build(vec![
            TokenConfig {
                name: "a".into(),
                secret: "sa".into(),
                databases: vec!["one".into()],
                max_points_per_second: None,
                permissions: None,
            },
            TokenConfig {
                name: "b".into(),
                secret: "sb".into(),
                databases: vec!["*".into()],
                max_points_per_second: Some(10),
                permissions: None,
            },
        ])
        .unwrap()
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn every_credential_form() {
        let t = tokens();
        assert_eq!(
            authenticate(&t, &headers("Token sa"), None).unwrap().name,
            "a"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:sb");
        assert_eq!(
            authenticate(&t, &headers(&format!("Basic {basic}")), None)
                .unwrap()
                .name,
            "b"
        );
        assert_eq!(
            authenticate(&t, &HeaderMap::new(), Some("sa"))
                .unwrap()
                .name,
            "a"
        );
        assert_eq!(
            authenticate(&t, &HeaderMap::new(), None).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            authenticate(&t, &headers("Token nope"), None).unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(
            authenticate(&t, &headers("token sa"), None).unwrap_err(),
            AuthError::Unknown
        );
        assert!(t[0].allows("one") && !t[0].allows("two") && t[1].allows("two"));
    }

    #[test]
    fn permissions_default_to_write_and_read() {
        let t = tokens();
        assert!(t[0].may(Permission::Write, "one") && t[0].may(Permission::Read, "one"));
        assert!(!t[0].may(Permission::Manage, "one"));
        assert!(!t[0].may(Permission::Read, "two"));
        let manager = build(vec![TokenConfig {
            name: "m".into(),
            secret: "sm".into(),
            databases: vec!["*".into()],
            max_points_per_second: None,
            permissions: Some(vec![Permission::Manage]),
        }])
        .unwrap();
        assert!(manager[0].may(Permission::Manage, "x") && !manager[0].has(Permission::Write));
        let none = TokenConfig {
            name: "b".into(),
            secret: "sb".into(),
            databases: vec!["*".into()],
            max_points_per_second: None,
            permissions: Some(vec![]),
        };
        assert!(build(vec![none]).is_err());
        // An unknown permission is refused as the config loads, naming file, line and key.
        let e = crate::plugins::processors::testing::error(
            "[[inputs.influxdb_listener]]\n[[inputs.influxdb_listener.token]]\nname = \"a\"\nsecret = \"s\"\ndatabases = [\"*\"]\npermissions = [\"admin\"]\n[[outputs.file]]\n",
        );
        assert!(
            e.contains("test.toml:6:") && e.contains("unknown variant `admin`"),
            "{e}"
        );
    }

    #[test]
    fn rejects_bad_tables() {
        let ok = TokenConfig {
            name: "a".into(),
            secret: "s".into(),
            databases: vec!["*".into()],
            max_points_per_second: None,
            permissions: None,
        };
        let empty_secret = TokenConfig {
            secret: String::new(),
            ..ok.clone()
        };
        assert!(build(vec![empty_secret])
            .unwrap_err()
            .message
            .contains("empty `secret`"));
        let dup = TokenConfig {
            name: "b".into(),
            ..ok.clone()
        };
        assert!(build(vec![ok.clone(), dup])
            .unwrap_err()
            .message
            .contains("same secret"));
    }

    #[test]
    fn limiter_refuses_what_does_not_fit_and_says_when_it_will() {
        let start = Instant::now();
        let mut l = Limiter::new(100);
        l.last = start;
        // Larger than a second of the rate: never, and it takes nothing.
        assert_eq!(l.take(150.0, start), Err(OverRate::Never { rate: 100 }));
        assert!(l.take(60.0, start).is_ok());
        // 40 left: 90 more fit after 0.5 s, and the refusal takes nothing.
        assert_eq!(
            l.take(90.0, start),
            Err(OverRate::Wait(Duration::from_millis(500)))
        );
        assert_eq!(
            l.take(90.0, start),
            Err(OverRate::Wait(Duration::from_millis(500)))
        );
        assert!(l.take(90.0, start + Duration::from_millis(500)).is_ok());
        // A whole bucket fits once it refills, however long the token was idle.
        assert!(l.take(100.0, start + Duration::from_secs(3600)).is_ok());
    }
}
