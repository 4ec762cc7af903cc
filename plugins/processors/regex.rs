//! `processors.regex`: regular-expression replacement on tag and field values
//! (`[[processors.regex.tags]]`, `[[processors.regex.fields]]`: `key` glob, `pattern`,
//! `replacement`, optional `result_key` and, for tags, `append`), and renaming of tag keys,
//! field keys and measurements (`tag_rename`, `field_rename`, `metric_rename`, with
//! `result_key = "overwrite"` (default) or `"keep"` when the new name exists).
//!
//! Replacements use `${1}` / `${name}` for groups, as Go's regexp does. A value or name the
//! pattern does not match is left alone.

use serde::Deserialize;

use crate::filter::GlobList;
use crate::metric::{FieldValue, Metric};
use crate::plugins::{BuildContext, BuildError, Processor};

/// `[[processors.regex]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    tags: Vec<ValueRule>,
    #[serde(default)]
    fields: Vec<ValueRule>,
    #[serde(default)]
    tag_rename: Vec<RenameRule>,
    #[serde(default)]
    field_rename: Vec<RenameRule>,
    #[serde(default)]
    metric_rename: Vec<RenameRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueRule {
    key: String,
    pattern: String,
    #[serde(default)]
    replacement: String,
    result_key: Option<String>,
    #[serde(default)]
    append: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameRule {
    pattern: String,
    #[serde(default)]
    replacement: String,
    result_key: Option<String>,
}

#[derive(Debug)]
struct Value {
    key: GlobList,
    re: regex::Regex,
    replacement: String,
    result_key: Option<String>,
    append: bool,
}

#[derive(Debug)]
struct Rename {
    re: regex::Regex,
    replacement: String,
    keep: bool,
}

impl Value {
    fn new(rule: ValueRule, table: &str) -> Result<Self, BuildError> {
        Ok(Value {
            key: super::globs(&format!("{table}.key"), std::slice::from_ref(&rule.key))?,
            re: compile(table, &rule.pattern)?,
            replacement: rule.replacement,
            result_key: rule.result_key,
            append: rule.append,
        })
    }

    fn replace(&self, value: &str) -> Option<String> {
        self.re.is_match(value).then(|| {
            self.re
                .replace_all(value, self.replacement.as_str())
                .into_owned()
        })
    }
}

impl Rename {
    fn new(rule: RenameRule, table: &str) -> Result<Self, BuildError> {
        let keep = match rule.result_key.as_deref() {
            None | Some("overwrite") => false,
            Some("keep") => true,
            Some(other) => {
                return Err(BuildError::new(format!(
                    "{table}.result_key = {other:?}: use \"overwrite\" or \"keep\""
                )))
            }
        };
        Ok(Rename {
            re: compile(table, &rule.pattern)?,
            replacement: rule.replacement,
            keep,
        })
    }

    /// The renames this rule makes among `keys`: (old, new) for each key it changes.
    fn plan<'k>(&self, keys: impl Iterator<Item = &'k String>) -> Vec<(String, String)> {
        keys.filter_map(|k| Some((k.clone(), self.rename(k)?)))
            .collect()
    }

    fn rename(&self, name: &str) -> Option<String> {
        if !self.re.is_match(name) {
            return None;
        }
        let new = self.re.replace_all(name, self.replacement.as_str());
        (new != name).then(|| new.into_owned())
    }
}

fn compile(table: &str, pattern: &str) -> Result<regex::Regex, BuildError> {
    regex::Regex::new(pattern)
        .map_err(|e| BuildError::new(format!("{table}.pattern {pattern:?}: {e}")))
}

/// The built processor.
#[derive(Debug)]
pub struct Regex {
    tags: Vec<Value>,
    fields: Vec<Value>,
    tag_rename: Vec<Rename>,
    field_rename: Vec<Rename>,
    metric_rename: Vec<Rename>,
}

impl Processor for Regex {
    const NAME: &'static str = "regex";
    type Config = Config;

    fn new(c: Config, _: &BuildContext) -> Result<Self, BuildError> {
        let values = |rules: Vec<ValueRule>, table: &str| -> Result<Vec<Value>, BuildError> {
            rules.into_iter().map(|r| Value::new(r, table)).collect()
        };
        let renames = |rules: Vec<RenameRule>, table: &str| -> Result<Vec<Rename>, BuildError> {
            rules.into_iter().map(|r| Rename::new(r, table)).collect()
        };
        let built = Regex {
            tags: values(c.tags, "tags")?,
            fields: values(c.fields, "fields")?,
            tag_rename: renames(c.tag_rename, "tag_rename")?,
            field_rename: renames(c.field_rename, "field_rename")?,
            metric_rename: renames(c.metric_rename, "metric_rename")?,
        };
        if built.tags.is_empty()
            && built.fields.is_empty()
            && built.tag_rename.is_empty()
            && built.field_rename.is_empty()
            && built.metric_rename.is_empty()
        {
            return Err(BuildError::new(
                "no rule given: add [[processors.regex.tags]], .fields, .tag_rename, .field_rename or .metric_rename",
            ));
        }
        Ok(built)
    }

    fn apply(&mut self, mut metrics: Vec<Metric>) -> Vec<Metric> {
        for m in &mut metrics {
            for rule in &self.tags {
                // Applied one by one: with `append`, each result joins what `result_key` holds
                // by then.
                let hits: Vec<(String, String)> = m
                    .tags
                    .iter()
                    .filter(|(k, _)| rule.key.is_match(k))
                    .filter_map(|(k, v)| Some((k.clone(), rule.replace(v)?)))
                    .collect();
                for (k, new) in hits {
                    match &rule.result_key {
                        None => m.add_tag(k, new),
                        Some(dest) => {
                            let value = match m.tag(dest) {
                                Some(old) if rule.append => format!("{old}{new}"),
                                _ => new,
                            };
                            m.add_tag(dest.clone(), value);
                        }
                    }
                }
            }
            for rule in &self.fields {
                m.update_fields(|k, v| {
                    let FieldValue::Str(s) = v else { return None };
                    let new = rule.key.is_match(k).then(|| rule.replace(s))??;
                    let key = rule.result_key.clone().unwrap_or_else(|| k.to_owned());
                    Some((key, FieldValue::Str(new)))
                });
            }
            for rule in &self.tag_rename {
                for (old, new) in rule.plan(m.tags.iter().map(|(k, _)| k)) {
                    if !(rule.keep && m.tag(&new).is_some()) {
                        m.rename_tag(&old, new);
                    }
                }
            }
            for rule in &self.field_rename {
                for (old, new) in rule.plan(m.fields.iter().map(|(k, _)| k)) {
                    if !(rule.keep && m.field(&new).is_some()) {
                        m.rename_field(&old, new);
                    }
                }
            }
            for rule in &self.metric_rename {
                if let Some(new) = rule.rename(&m.name) {
                    m.name = new;
                }
            }
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use crate::plugins::processors::testing::{cases, error};

    #[test]
    fn documented_examples() {
        cases(
            r#"
[[processors.regex]]
  [[processors.regex.tags]]
    key = "resp_code"
    pattern = "^(\\d)\\d\\d$"
    replacement = "${1}xx"
  [[processors.regex.fields]]
    key = "request"
    pattern = "^/api(?P<method>/[\\w/]+)\\S*"
    replacement = "${method}"
    result_key = "method"
  [[processors.regex.fields]]
    key = "request"
    pattern = ".*category=(\\w+).*"
    replacement = "${1}"
    result_key = "search_category"
"#,
            &[(
                "nginx_requests,verb=GET,resp_code=200 request=\"/api/search/?category=plugins&q=regex&sort=asc\",referrer=\"-\",ident=\"-\",http_version=1.1,agent=\"UserAgent\",client_ip=\"127.0.0.1\",auth=\"-\",resp_bytes=270i 1519652321000000000",
                "nginx_requests,resp_code=2xx,verb=GET request=\"/api/search/?category=plugins&q=regex&sort=asc\",referrer=\"-\",ident=\"-\",http_version=1.1,agent=\"UserAgent\",client_ip=\"127.0.0.1\",auth=\"-\",resp_bytes=270i,method=\"/search/\",search_category=\"plugins\" 1519652321000000000",
            )],
        );
    }

    #[test]
    fn renames_and_append() {
        cases(
            r#"
[[processors.regex]]
  [[processors.regex.tag_rename]]
    pattern = "^search_(\\w+)d$"
    replacement = "${1}"
  [[processors.regex.field_rename]]
    pattern = "^(\\w+)_count$"
    replacement = "${1}"
    result_key = "keep"
  [[processors.regex.metric_rename]]
    pattern = "^(\\w+)_requests$"
    replacement = "${1}"
  [[processors.regex.tags]]
    key = "verb"
    pattern = "^(.*)$"
    replacement = "-${1}"
    result_key = "path"
    append = true
"#,
            &[(
                "nginx_requests,search_field=a,path=/x,verb=GET hit_count=1i,miss_count=2i,miss=9i 1",
                "nginx,fiel=a,path=/x-GET,verb=GET miss_count=2i,miss=9i,hit=1i 1",
            )],
        );
        assert!(error(
            "[[processors.regex]]\n[[processors.regex.tags]]\nkey = \"a\"\npattern = \"(\"\n"
        )
        .contains("tags.pattern"));
        assert!(error("[[processors.regex]]\n[[processors.regex.tag_rename]]\npattern = \"a\"\nresult_key = \"x\"\n").contains("overwrite"));
    }
}
