//! Telegraf's metric selectors and modifiers (`namepass`, `tagdrop`, `fieldinclude`, ...),
//! compiled once when the config loads and applied per metric without allocating.
//!
//! Glob semantics follow Telegraf's: a pattern without `*`, `?` or `[` is an exact string; any
//! other is a glob with `*`, `?`, `[...]` classes and `{a,b}` alternatives, matched over the
//! whole string. With `namepass_separator` (or `namedrop_separator`) set, `*` and `?` do not
//! cross the given separator characters.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::metric::Metric;

/// The private-use character a literal `/` becomes when other characters are separators, so
/// that only the configured separators stop `*`.
const SLASH_STANDIN: char = '\u{E000}';

/// A list of exact strings and globs, any of which may match.
#[derive(Debug, Clone)]
pub struct GlobList {
    exact: Vec<Box<str>>,
    globs: Option<GlobSet>,
    separators: Box<[char]>,
}

impl GlobList {
    /// Compiles `patterns`; `separators` are characters `*` and `?` do not cross (none: empty).
    ///
    /// # Errors
    /// The first pattern that is not a valid glob, with the reason.
    pub fn new<S: AsRef<str>>(patterns: &[S], separators: &str) -> Result<Self, String> {
        let separators: Box<[char]> = separators.chars().collect();
        let mut exact = Vec::new();
        let mut set = GlobSetBuilder::new();
        let mut any_glob = false;
        for p in patterns {
            let p = p.as_ref();
            if !p.contains(['*', '?', '[']) {
                exact.push(Box::from(p));
                continue;
            }
            let text = if separators.is_empty() {
                p.to_owned()
            } else {
                remap(p, &separators)
            };
            let glob = GlobBuilder::new(&text)
                .literal_separator(!separators.is_empty())
                .backslash_escape(true)
                .empty_alternates(true)
                .build()
                .map_err(|e| format!("invalid glob {p:?}: {}", e.kind()))?;
            set.add(glob);
            any_glob = true;
        }
        let globs = if any_glob {
            Some(set.build().map_err(|e| format!("invalid glob: {e}"))?)
        } else {
            None
        };
        Ok(GlobList {
            exact,
            globs,
            separators,
        })
    }

    /// Whether any pattern matches all of `s`.
    pub fn is_match(&self, s: &str) -> bool {
        if self.exact.iter().any(|e| **e == *s) {
            return true;
        }
        match &self.globs {
            None => false,
            Some(set) if self.separators.is_empty() => set.is_match(s),
            Some(set) => set.is_match(remap(s, &self.separators)),
        }
    }
}

/// Makes the configured separators `/` (what the glob engine stops at) and a literal `/` a
/// stand-in, the same way for patterns and subjects.
fn remap(s: &str, separators: &[char]) -> String {
    s.chars()
        .map(|c| {
            if separators.contains(&c) {
                '/'
            } else if c == '/' {
                SLASH_STANDIN
            } else {
                c
            }
        })
        .collect()
}

/// The selector keys every plugin table accepts, as written.
pub const KEYS: &[&str] = &[
    "namepass",
    "namepass_separator",
    "namedrop",
    "namedrop_separator",
    "fieldinclude",
    "fieldpass",
    "fieldexclude",
    "fielddrop",
    "tagpass",
    "tagdrop",
    "taginclude",
    "tagexclude",
    "metricpass",
];

/// The selector keys of a plugin table, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep only metrics whose name matches one of these.
    #[serde(default)]
    pub namepass: Vec<String>,
    /// Characters `*` does not cross in `namepass`.
    #[serde(default)]
    pub namepass_separator: String,
    /// Drop metrics whose name matches one of these.
    #[serde(default)]
    pub namedrop: Vec<String>,
    /// Characters `*` does not cross in `namedrop`.
    #[serde(default)]
    pub namedrop_separator: String,
    /// Keep only fields whose key matches.
    #[serde(default)]
    pub fieldinclude: Vec<String>,
    /// Old name of `fieldinclude`; its values are added to it.
    #[serde(default)]
    pub fieldpass: Vec<String>,
    /// Remove fields whose key matches.
    #[serde(default)]
    pub fieldexclude: Vec<String>,
    /// Old name of `fieldexclude`; its values are added to it.
    #[serde(default)]
    pub fielddrop: Vec<String>,
    /// Keep only metrics with a listed tag whose value matches.
    #[serde(default)]
    pub tagpass: BTreeMap<String, Vec<String>>,
    /// Drop metrics with a listed tag whose value matches.
    #[serde(default)]
    pub tagdrop: BTreeMap<String, Vec<String>>,
    /// Keep only tags whose key matches.
    #[serde(default)]
    pub taginclude: Vec<String>,
    /// Remove tags whose key matches.
    #[serde(default)]
    pub tagexclude: Vec<String>,
    /// Telegraf's CEL expression: not supported, rejected with a message.
    pub metricpass: Option<String>,
}

/// Compiled selectors (which metrics a plugin handles) and modifiers (which of their fields and
/// tags it keeps).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    namepass: Option<GlobList>,
    namedrop: Option<GlobList>,
    tagpass: Vec<(String, GlobList)>,
    tagdrop: Vec<(String, GlobList)>,
    fieldinclude: Option<GlobList>,
    fieldexclude: Option<GlobList>,
    taginclude: Option<GlobList>,
    tagexclude: Option<GlobList>,
}

impl Filter {
    /// Compiles the selectors of one plugin table.
    ///
    /// # Errors
    /// `(key, message)` for the first invalid glob, or an unsupported key.
    pub fn compile(c: &FilterConfig) -> Result<Filter, (&'static str, String)> {
        if c.metricpass.is_some() {
            return Err((
                "metricpass",
                "`metricpass` (a CEL expression) is not supported by heliograph; use namepass/namedrop and tagpass/tagdrop".into(),
            ));
        }
        fn list(
            key: &'static str,
            patterns: &[String],
            separators: &str,
        ) -> Result<Option<GlobList>, (&'static str, String)> {
            if patterns.is_empty() {
                return Ok(None);
            }
            GlobList::new(patterns, separators)
                .map(Some)
                .map_err(|e| (key, e))
        }
        fn tags(
            key: &'static str,
            table: &BTreeMap<String, Vec<String>>,
        ) -> Result<Vec<(String, GlobList)>, (&'static str, String)> {
            table
                .iter()
                .map(|(k, v)| {
                    GlobList::new(v, "")
                        .map(|g| (k.clone(), g))
                        .map_err(|e| (key, format!("tag {k:?}: {e}")))
                })
                .collect()
        }
        let concat =
            |a: &[String], b: &[String]| -> Vec<String> { a.iter().chain(b).cloned().collect() };
        Ok(Filter {
            namepass: list("namepass", &c.namepass, &c.namepass_separator)?,
            namedrop: list("namedrop", &c.namedrop, &c.namedrop_separator)?,
            tagpass: tags("tagpass", &c.tagpass)?,
            tagdrop: tags("tagdrop", &c.tagdrop)?,
            fieldinclude: list("fieldinclude", &concat(&c.fieldinclude, &c.fieldpass), "")?,
            fieldexclude: list("fieldexclude", &concat(&c.fieldexclude, &c.fielddrop), "")?,
            taginclude: list("taginclude", &c.taginclude, "")?,
            tagexclude: list("tagexclude", &c.tagexclude, "")?,
        })
    }

    /// Whether the filter does nothing (every metric selected, nothing removed).
    pub fn is_empty(&self) -> bool {
        !self.has_selectors() && !self.has_modifiers()
    }

    /// Whether any of `namepass`, `namedrop`, `tagpass`, `tagdrop` is set.
    pub fn has_selectors(&self) -> bool {
        self.namepass.is_some()
            || self.namedrop.is_some()
            || !self.tagpass.is_empty()
            || !self.tagdrop.is_empty()
    }

    /// Whether any of `fieldinclude`, `fieldexclude`, `taginclude`, `tagexclude` is set.
    pub fn has_modifiers(&self) -> bool {
        self.fieldinclude.is_some()
            || self.fieldexclude.is_some()
            || self.taginclude.is_some()
            || self.tagexclude.is_some()
    }

    /// Whether the plugin handles `m`: `namepass`, then `namedrop`, then `tagpass` (any listed
    /// tag matching), then `tagdrop`.
    pub fn select(&self, m: &Metric) -> bool {
        if let Some(g) = &self.namepass {
            if !g.is_match(&m.name) {
                return false;
            }
        }
        if let Some(g) = &self.namedrop {
            if g.is_match(&m.name) {
                return false;
            }
        }
        let tag_matches = |filters: &[(String, GlobList)]| {
            filters
                .iter()
                .any(|(key, g)| m.tag(key).is_some_and(|v| g.is_match(v)))
        };
        if !self.tagpass.is_empty() && !tag_matches(&self.tagpass) {
            return false;
        }
        if !self.tagdrop.is_empty() && tag_matches(&self.tagdrop) {
            return false;
        }
        true
    }

    /// Removes the fields and tags the modifiers exclude. A metric left without fields is
    /// dropped by the caller.
    pub fn modify(&self, m: &mut Metric) {
        if self.fieldinclude.is_some() || self.fieldexclude.is_some() {
            m.fields
                .retain(|(k, _)| keep(k, &self.fieldinclude, &self.fieldexclude));
        }
        if self.taginclude.is_some() || self.tagexclude.is_some() {
            m.tags
                .retain(|(k, _)| keep(k, &self.taginclude, &self.tagexclude));
        }
    }

    /// Keeps the metrics the selectors choose, with the modifiers applied; drops those left
    /// without fields.
    pub fn apply(&self, metrics: &mut Vec<Metric>) {
        if self.is_empty() {
            return;
        }
        metrics.retain_mut(|m| {
            if !self.select(m) {
                return false;
            }
            self.modify(m);
            !m.fields.is_empty()
        });
    }
}

fn keep(key: &str, include: &Option<GlobList>, exclude: &Option<GlobList>) -> bool {
    include.as_ref().is_none_or(|g| g.is_match(key))
        && exclude.as_ref().is_none_or(|g| !g.is_match(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::FieldValue;

    fn metric(name: &str, tags: &[(&str, &str)], fields: &[&str]) -> Metric {
        let mut m = Metric::new(name, 0);
        for (k, v) in tags {
            m.add_tag(*k, *v);
        }
        for f in fields {
            m.add_field(*f, FieldValue::Int(1));
        }
        m
    }

    fn filter(toml_text: &str) -> Filter {
        let c: FilterConfig = toml::from_str(toml_text).unwrap();
        Filter::compile(&c).unwrap()
    }

    #[test]
    fn globs_follow_telegraf() {
        let cases: &[(&[&str], &str, &str, bool)] = &[
            (&["cpu"], "", "cpu", true),
            (&["cpu"], "", "cpu2", false),
            (&["cpu*"], "", "cpu_total", true),
            (&["c?u"], "", "cpu", true),
            (&["c?u"], "", "cpuu", false),
            (&["[cd]isk"], "", "disk", true),
            (&["[!cd]isk"], "", "disk", false),
            (&["*.{a,b}"], "", "x.a", true),
            (&["*.{a,b}"], "", "x.c", false),
            // Without a `*?[` a pattern is exact, braces and all.
            (&["{a,b}"], "", "{a,b}", true),
            (&["{a,b}"], "", "a", false),
            (&["*"], "", "", true),
            // Separators stop `*` and `?`.
            (&["a.*"], ".", "a.b", true),
            (&["a.*"], ".", "a.b.c", false),
            (&["a.*"], "", "a.b.c", true),
            (&["a*"], "._", "a_b", false),
            // A `/` is an ordinary character when it is not a separator.
            (&["a.*"], ".", "a.b/c", true),
            (&["a/*"], ".", "a/b", true),
            (&["a*"], "", "a/b", true),
        ];
        for (patterns, seps, subject, want) in cases {
            let g = GlobList::new(patterns, seps).unwrap();
            assert_eq!(
                g.is_match(subject),
                *want,
                "{patterns:?} sep {seps:?} on {subject:?}"
            );
        }
        assert!(GlobList::new(&["[a"], "").is_err());
    }

    #[test]
    fn selectors_as_documented() {
        // namepass and namedrop: both must pass.
        let f = filter("namepass = [\"cpu*\"]\nnamedrop = [\"cpu_guest\"]");
        assert!(f.select(&metric("cpu", &[], &["a"])));
        assert!(!f.select(&metric("cpu_guest", &[], &["a"])));
        assert!(!f.select(&metric("mem", &[], &["a"])));
        // tagpass: any listed key whose value matches.
        let f = filter("[tagpass]\ncpu = [\"cpu6\", \"cpu7\"]\nfstype = [\"ext4\", \"xfs\"]");
        assert!(f.select(&metric("m", &[("cpu", "cpu6")], &["a"])));
        assert!(f.select(&metric("m", &[("fstype", "xfs"), ("cpu", "x")], &["a"])));
        assert!(!f.select(&metric("m", &[("cpu", "cpu0")], &["a"])));
        assert!(!f.select(&metric("m", &[], &["a"])));
        // tagdrop: any listed key whose value matches drops it.
        let f = filter("[tagdrop]\ncpu = [\"cpu6\", \"cpu7\"]\npath = [\"/opt*\"]");
        assert!(!f.select(&metric("m", &[("cpu", "cpu7")], &["a"])));
        assert!(!f.select(&metric("m", &[("path", "/opt/x")], &["a"])));
        assert!(f.select(&metric("m", &[("cpu", "cpu0")], &["a"])));
        assert!(f.select(&metric("m", &[], &["a"])));
        // Both: must pass tagpass and survive tagdrop.
        let f = filter("[tagpass]\nh = [\"a*\"]\n[tagdrop]\nh = [\"ab\"]");
        assert!(f.select(&metric("m", &[("h", "ac")], &["a"])));
        assert!(!f.select(&metric("m", &[("h", "ab")], &["a"])));
    }

    #[test]
    fn modifiers_as_documented() {
        let f = filter(
            "fieldinclude = [\"usage_*\"]\nfieldexclude = [\"usage_guest*\"]\ntaginclude = [\"cpu\", \"host\"]",
        );
        let mut ms = vec![
            metric(
                "cpu",
                &[("cpu", "cpu0"), ("host", "h"), ("dc", "x")],
                &["usage_idle", "usage_guest", "usage_guest_nice", "time_idle"],
            ),
            metric("cpu", &[], &["time_idle"]),
        ];
        f.apply(&mut ms);
        assert_eq!(ms.len(), 1, "a metric left without fields is dropped");
        let names: Vec<&str> = ms[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["usage_idle"]);
        let tags: Vec<&str> = ms[0].tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(tags, ["cpu", "host"]);
        // The old names add to the new lists.
        let f = filter("fieldpass = [\"a\"]\nfieldinclude = [\"b\"]\ntagexclude = [\"x\"]");
        let mut ms = vec![metric("m", &[("x", "1"), ("y", "2")], &["a", "b", "c"])];
        f.apply(&mut ms);
        assert_eq!(ms[0].fields.len(), 2);
        assert_eq!(ms[0].tags, vec![("y".to_string(), "2".to_string())]);
    }

    #[test]
    fn metricpass_and_bad_globs_are_refused() {
        let c: FilterConfig = toml::from_str("metricpass = \"true\"").unwrap();
        let (key, msg) = Filter::compile(&c).unwrap_err();
        assert_eq!(key, "metricpass");
        assert!(msg.contains("not supported"), "{msg}");
        let c: FilterConfig = toml::from_str("[tagpass]\ncpu = [\"[x\"]").unwrap();
        let (key, msg) = Filter::compile(&c).unwrap_err();
        assert_eq!(key, "tagpass");
        assert!(msg.contains("cpu"), "{msg}");
    }
}
