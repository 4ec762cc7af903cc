//! The data every pipeline stage passes on: a [`Metric`] and where it came from ([`Origin`]).
//!
//! A metric is a measurement name, a tag set sorted by key, at least one field and a timestamp
//! in nanoseconds since the Unix epoch. Parsing lives in [`crate::line_protocol`]; this module
//! only holds the model and the small invariants on it (sorted, unique tag keys).

use std::sync::Arc;

/// The retention policy a write lands in when it names none, as in InfluxDB 1.x.
pub const DEFAULT_RETENTION_POLICY: &str = "autogen";

/// A field's value, with the five types line protocol can carry.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A 64-bit float: `1.5`, `1`, `-2e3`.
    Float(f64),
    /// A signed integer: `1i`.
    Int(i64),
    /// An unsigned integer: `1u`.
    UInt(u64),
    /// A string: `"text"`.
    Str(String),
    /// A boolean: `t`, `true`, `F`, ...
    Bool(bool),
}

impl FieldValue {
    /// The value as text, the way Telegraf's processors print it: integers in decimal, floats
    /// in the shortest form without an exponent, `true`/`false`, strings as they are.
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            FieldValue::Str(s) => Cow::Borrowed(s),
            FieldValue::Int(i) => Cow::Owned(i.to_string()),
            FieldValue::UInt(u) => Cow::Owned(u.to_string()),
            FieldValue::Float(f) => Cow::Owned(f.to_string()),
            FieldValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    /// The name of the value's type, as InfluxDB spells it in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Int(_) => "integer",
            FieldValue::UInt(_) => "unsigned",
            FieldValue::Str(_) => "string",
            FieldValue::Bool(_) => "boolean",
        }
    }
}

/// Where a metric is going: the database and retention policy of the write that carried it.
///
/// Gathered metrics get the defaults from config. Outputs that relay upstream keep them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The database (`db` of `/write`, or the bucket of `/api/v2/write`).
    pub db: String,
    /// The retention policy; never empty (an empty `rp` is [`DEFAULT_RETENTION_POLICY`]).
    pub rp: String,
}

impl Origin {
    /// An origin for `db` and `rp`, where an empty or missing `rp` means `autogen`.
    pub fn new(db: impl Into<String>, rp: Option<&str>) -> Self {
        let rp = match rp {
            Some(rp) if !rp.is_empty() => rp.to_owned(),
            _ => DEFAULT_RETENTION_POLICY.to_owned(),
        };
        Origin { db: db.into(), rp }
    }
}

/// One point: measurement, sorted tags, fields, nanosecond timestamp and origin.
///
/// ```
/// use heliograph::metric::{FieldValue, Metric};
/// let mut m = Metric::new("cpu", 1_000);
/// m.add_tag("region", "eu");
/// m.add_tag("host", "a");
/// m.add_field("usage", FieldValue::Float(0.5));
/// assert_eq!(m.tags[0].0, "host"); // tags stay sorted by key
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The measurement name.
    pub name: String,
    /// Tags sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
    /// Fields in the order they were written, keys unique.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    /// Where the metric is routed; shared by every metric of one write.
    pub origin: Arc<Origin>,
}

impl Metric {
    /// A metric with no tags and no fields yet, routed to the default origin (`db` empty).
    pub fn new(name: impl Into<String>, time: i64) -> Self {
        Metric {
            name: name.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            time,
            origin: Arc::new(Origin::new("", None)),
        }
    }

    /// Sets a tag, keeping the tag set sorted; an existing value for the key is replaced.
    pub fn add_tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        match self.tags.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.tags[i].1 = value.into(),
            Err(i) => self.tags.insert(i, (key, value.into())),
        }
    }

    /// The value of tag `key`, if the metric has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.tags[i].1.as_str())
    }

    /// Sets a field; an existing value for the key is replaced.
    pub fn add_field(&mut self, key: impl Into<String>, value: FieldValue) {
        let key = key.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
    }

    /// Sets the tags `f` gives, seeing every tag first: `f(key, value)` returns the key to set
    /// (its own or another) and the new value, or `None` to leave the tag alone.
    pub fn update_tags(&mut self, mut f: impl FnMut(&str, &str) -> Option<(String, String)>) {
        let changes: Vec<(String, String)> =
            self.tags.iter().filter_map(|(k, v)| f(k, v)).collect();
        for (k, v) in changes {
            self.add_tag(k, v);
        }
    }

    /// Sets the fields `f` gives, seeing every field first: `f(key, value)` returns the key to
    /// set (its own or another) and the new value, or `None` to leave the field alone.
    pub fn update_fields(
        &mut self,
        mut f: impl FnMut(&str, &FieldValue) -> Option<(String, FieldValue)>,
    ) {
        let changes: Vec<(String, FieldValue)> =
            self.fields.iter().filter_map(|(k, v)| f(k, v)).collect();
        for (k, v) in changes {
            self.add_field(k, v);
        }
    }

    /// Applies Telegraf's `name_override`, then `name_prefix` and `name_suffix`.
    pub fn rename_measurement(
        &mut self,
        name_override: Option<&str>,
        prefix: Option<&str>,
        suffix: Option<&str>,
    ) {
        if let Some(name) = name_override {
            self.name.clear();
            self.name.push_str(name);
        }
        if let Some(prefix) = prefix {
            self.name.insert_str(0, prefix);
        }
        if let Some(suffix) = suffix {
            self.name.push_str(suffix);
        }
    }

    /// Renames tag `from` to `to`, replacing a tag already named `to`; false without `from`.
    pub fn rename_tag(&mut self, from: &str, to: impl Into<String>) -> bool {
        match self.remove_tag(from) {
            Some(v) => {
                self.add_tag(to, v);
                true
            }
            None => false,
        }
    }

    /// Renames field `from` to `to` (it moves to the end), replacing a field already named `to`;
    /// false without `from`.
    pub fn rename_field(&mut self, from: &str, to: impl Into<String>) -> bool {
        match self.remove_field(from) {
            Some(v) => {
                self.add_field(to, v);
                true
            }
            None => false,
        }
    }

    /// Removes tag `key`, returning its value.
    pub fn remove_tag(&mut self, key: &str) -> Option<String> {
        let i = self
            .tags
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()?;
        Some(self.tags.remove(i).1)
    }

    /// Removes field `key`, returning its value.
    pub fn remove_field(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// The value of field `key`, if the metric has it.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_rp_is_autogen() {
        assert_eq!(Origin::new("db", Some("")).rp, "autogen");
        assert_eq!(Origin::new("db", None).rp, "autogen");
        assert_eq!(Origin::new("db", Some("week")).rp, "week");
    }

    #[test]
    fn add_tag_replaces_and_sorts() {
        let mut m = Metric::new("m", 0);
        m.add_tag("b", "1");
        m.add_tag("a", "2");
        m.add_tag("b", "3");
        assert_eq!(
            m.tags,
            vec![("a".into(), "2".into()), ("b".into(), "3".into())]
        );
        assert_eq!(m.tag("b"), Some("3"));
        assert_eq!(m.tag("c"), None);
    }
}
