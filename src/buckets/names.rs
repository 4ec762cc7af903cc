//! Database and retention policy names as directory names that cannot escape `data_dir`.
//!
//! Every byte outside `[A-Za-z0-9_-]` becomes `%XX`, so `.`, `..`, `/` and NUL cannot form a path
//! component of their own. Names are limited in length so the encoded form fits in a file name.

/// The longest db or rp name accepted, in bytes (encoded, at most 3x: under the 255-byte limit
/// of common file systems).
pub const MAX_NAME: usize = 80;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("{what} name is empty")]
    Empty {
        /// `database` or `retention policy`.
        what: &'static str,
    },
    /// Too long.
    #[error("{what} name is {len} bytes; the limit is {MAX_NAME}")]
    TooLong {
        /// `database` or `retention policy`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Checks `name` and returns its directory name.
///
/// # Errors
/// [`NameError`] for an empty or overlong name.
pub fn encode(what: &'static str, name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
        });
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// The name a directory name stands for; `None` if it is not one [`encode`] makes.
pub fn decode(dir: &str) -> Option<String> {
    let b = dir.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_one_component() {
        for name in ["..", ".", "a/b", "../../etc", "x\0y", "db name", "ünï"] {
            let enc = encode("database", name).unwrap();
            assert!(
                !enc.contains('/') && !enc.contains('\0') && !enc.contains('.'),
                "{enc}"
            );
            assert_ne!(enc, "..");
            assert_eq!(decode(&enc).unwrap(), name);
        }
        assert_eq!(encode("database", "telegraf").unwrap(), "telegraf");
        assert!(encode("database", "").is_err());
        assert!(matches!(
            encode("database", &"x".repeat(10_000)),
            Err(NameError::TooLong { len: 10_000, .. })
        ));
    }
}
