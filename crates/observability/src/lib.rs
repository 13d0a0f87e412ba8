//! The Grafana dashboard and Prometheus alert rules of `deploy/observability`,
//! read as data: the PromQL expressions they hold and the series each one
//! queries, so that a test can hold them against what the processes register
//! (`tests/names.rs`). PromQL's syntax is checked by `promtool` where it is
//! installed (`scripts/check-observability.sh`); what is read here is only
//! which series are named.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// `deploy/observability` of this workspace.
pub fn directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

/// Every PromQL expression of a Grafana dashboard: each panel's targets
/// (`expr`), rows and nested panels included, and templating queries.
pub fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(object) => {
                for (key, value) in object {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                        _ => walk(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, &mut found);
    found
}

/// An alerting or recording rule of a rules file.
#[derive(Debug)]
pub struct Rule {
    /// `alert` or `record`.
    pub name: String,
    pub expr: String,
}

/// Every rule of a Prometheus rules file (`groups: [{rules: [...]}]`).
pub fn rules(text: &str) -> Result<Vec<Rule>, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    let mut rules = Vec::new();
    for document in &documents {
        let groups = document["groups"]
            .as_vec()
            .ok_or("a rules file has a list of groups")?;
        for group in groups {
            for rule in group["rules"].as_vec().ok_or("a group has rules")? {
                let name = match (&rule["alert"], &rule["record"]) {
                    (Yaml::String(name), _) | (_, Yaml::String(name)) => name.clone(),
                    _ => return Err(format!("a rule without alert or record: {rule:?}")),
                };
                let expr = match &rule["expr"] {
                    Yaml::String(expr) => expr.clone(),
                    _ => return Err(format!("rule {name} has no expr")),
                };
                rules.push(Rule { name, expr });
            }
        }
    }
    Ok(rules)
}

/// The input series of a `promtool test rules` file.
pub fn test_series(text: &str) -> Result<Vec<String>, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    let mut series = Vec::new();
    for document in &documents {
        for test in document["tests"].as_vec().ok_or("a test file has tests")? {
            for input in test["input_series"]
                .as_vec()
                .ok_or("a test has input_series")?
            {
                match &input["series"] {
                    Yaml::String(selector) => series.push(selector.clone()),
                    _ => return Err(format!("an input series without a name: {input:?}")),
                }
            }
        }
    }
    Ok(series)
}

/// Words of PromQL that are not series names when they stand alone (an
/// aggregation may be followed by `by (...)` before its parentheses).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "group_left",
    "group_right",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The series names an expression selects: every identifier that is not a
/// function, a keyword, a label name (in `{...}` or a `by (...)` list) or part
/// of a string, a number or a duration.
pub fn series_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '{' {
            i = skip_until(&chars, i, '}')?;
        } else if c == '[' {
            i = skip_until(&chars, i, ']')?;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let call = chars.get(after) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_until(&chars, after, ')')?;
                }
            } else if call || KEYWORDS.contains(&word.as_str()) {
                // A function (its arguments are read on) or an operator.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// The index after the string starting at `start`.
fn skip_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("an unterminated string".to_owned())
}

/// The index after the `close` that ends what starts at `start`, strings
/// inside skipped.
fn skip_until(chars: &[char], start: usize, close: char) -> Result<usize, String> {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == close => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("an unclosed {:?}", chars[start]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        series_names(expr).unwrap().into_iter().collect()
    }

    #[test]
    fn series_are_told_apart_from_functions_labels_keywords_and_durations() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route!~"/x|y", status=~"5.."}[5m] offset 1h)))"#
            ),
            ["a_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum(rate(a_total[5m])) by (job) / ignoring(status) group_left sum without (x) (b_total) > bool 0.5 and on (job) c unless d"
            ),
            ["a_total", "b_total", "c", "d"]
        );
        assert_eq!(
            names("max_over_time(deriv(x_lag[10m:1m])[1h:]) > 1e3 # a comment naming y"),
            ["x_lag"]
        );
        assert_eq!(
            names(r#"label_replace(up, "a", "$1", "b", "(.*)")"#),
            ["up"]
        );
    }

    #[test]
    fn unterminated_strings_and_braces_are_errors() {
        assert!(series_names(r#"a{b="c}"#).is_err());
        assert!(series_names("rate(a[5m)").is_err());
    }

    #[test]
    fn dashboard_expressions_are_found_in_nested_panels() {
        let dashboard = serde_json::json!({"panels": [
            {"targets": [{"expr": "a"}]},
            {"type": "row", "panels": [{"targets": [{"expr": "b"}, {"expr": "c"}]}]}
        ]});
        assert_eq!(dashboard_expressions(&dashboard), ["a", "b", "c"]);
    }

    #[test]
    fn rules_and_test_series_are_read() {
        let rules = rules("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 1\n  - record: r\n    expr: sum(y)\n").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].name.as_str(), rules[0].expr.as_str()),
            ("A", "x > 1")
        );
        assert_eq!(rules[1].name, "r");
        let series =
            test_series("tests:\n- input_series:\n  - series: 'x{a=\"b\"}'\n    values: 1x5\n")
                .unwrap();
        assert_eq!(series, [r#"x{a="b"}"#]);
    }
}
