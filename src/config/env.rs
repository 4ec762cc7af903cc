//! `${VAR}` and `${VAR:-default}` substitution in config text, before TOML parsing.
//!
//! As in Telegraf, substitution works on the raw text, so a variable can hold any TOML value.
//! Comment lines are left alone. An unset variable without a default is left as written, as
//! Telegraf does (so `${1}` / `${name}` in a regex replacement survive), and is reported, so
//! `check` can tell the user. Substituted values never contain a newline,
//! so line numbers in later errors still point at the file as written.

/// The text with variables substituted, and the names of unset variables that had no default.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                // Not a variable reference (e.g. a literal `${` in a string): keep it.
                out.push_str("${");
                rest = after;
                continue;
            }
            let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => {
                    unset.push(name.to_owned());
                    format!("${{{inner}}}")
                }
            };
            out.push_str(&value.replace(['\n', '\r'], " "));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    (out, unset)
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let (out, unset) = substitute(
            "a = \"${TOKEN}\"\nb = \"${MISSING:-x}\"\nc = \"${EMPTY:-d}\"\n# ${NOPE}\nd = \"${NOPE}\"\ne = \"${1x} ${\"\n",
            env,
        );
        assert_eq!(
            out,
            "a = \"s3cret\"\nb = \"x\"\nc = \"d\"\n# ${NOPE}\nd = \"${NOPE}\"\ne = \"${1x} ${\"\n"
        );
        assert_eq!(unset, vec!["NOPE".to_string()]);
    }
}
