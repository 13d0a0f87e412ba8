//! Reading settings from environment variables, one policy for every process:
//! unset variables take their documented defaults, a `.env` file is read when
//! present, and a value that makes no sense (`-1` or `soon` seconds, a port of
//! `99999`) stops the process at start with a message naming the variable -
//! never a silent zero.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(String);

/// Where variables come from: the process environment (and `.env`), or a map
/// (tests, which must not change the process's environment).
pub enum Variables {
    Environment,
    Map(HashMap<String, String>),
}

impl Variables {
    /// One variable's value (`name` as written, upper case), unset or blank =
    /// `None`; for the few read before the others (a settings file's path).
    pub fn value(&self, name: &str) -> Option<String> {
        let value = match self {
            Variables::Environment => {
                let _ = dotenvy::dotenv();
                std::env::var(name).ok()
            }
            Variables::Map(map) => map.get(name).cloned(),
        }?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }
}

/// A TOML settings file (`<PROCESS>_CONFIG`): its tables and values, as read.
pub type FileValues = config::Map<String, config::Value>;

/// Reads a TOML settings file whose keys are the variables' names in lower case
/// (the process decides which it knows, and refuses the rest).
pub fn read_file(path: &str) -> Result<FileValues, SettingsError> {
    config::Source::collect(&config::File::new(path, config::FileFormat::Toml))
        .map_err(|error| SettingsError(format!("{path}: {error}")))
}

/// A file value as a variable's text: strings, numbers and booleans as
/// written, arrays of them joined by commas; `None` for tables.
pub fn file_text(value: &config::Value) -> Option<String> {
    use config::ValueKind;
    Some(match &value.kind {
        ValueKind::Nil => String::new(),
        ValueKind::Boolean(value) => value.to_string(),
        ValueKind::I64(value) => value.to_string(),
        ValueKind::I128(value) => value.to_string(),
        ValueKind::U64(value) => value.to_string(),
        ValueKind::U128(value) => value.to_string(),
        ValueKind::Float(value) => value.to_string(),
        ValueKind::String(value) => value.clone(),
        ValueKind::Array(items) => items
            .iter()
            .map(|item| match item.kind {
                ValueKind::Array(_) | ValueKind::Table(_) => None,
                _ => file_text(item),
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        ValueKind::Table(_) => return None,
    })
}

/// Settings a process reads from its variables, with the two ways to call it.
pub trait FromVariables: Sized {
    fn read(variables: Variables) -> Result<Self, SettingsError>;

    /// From the environment (and a `.env` file when present).
    fn from_env() -> Result<Self, SettingsError> {
        Self::read(Variables::Environment)
    }

    /// From `variables` instead of the environment (tests).
    fn from_variables(variables: HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::read(Variables::Map(variables))
    }

    /// From `(NAME, value)` pairs instead of the environment (tests).
    fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, SettingsError> {
        Self::from_variables(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }
}

/// The variables of a process, defaults filled in; [`Source::get`] reads the
/// structs the process's settings are made of.
pub struct Source(config::Config);

/// Reads the variables, `defaults` filling what is unset.
pub fn read(defaults: &[(&str, &str)], variables: Variables) -> Result<Source, SettingsError> {
    let source = match variables {
        Variables::Environment => {
            let _ = dotenvy::dotenv();
            None
        }
        Variables::Map(map) => Some(map.into_iter().collect()),
    };
    let mut builder = config::Config::builder();
    for (key, value) in defaults {
        builder = builder
            .set_default(*key, *value)
            .map_err(|error| SettingsError(error.to_string()))?;
    }
    builder
        .add_source(config::Environment::default().source(source))
        .build()
        .map(Source)
        .map_err(|error| SettingsError(error.to_string()))
}

impl Source {
    /// Reads one struct of settings. Its field names are the variables' names
    /// in lower case; numbers and durations must use [`number`] and
    /// [`seconds`], which read both the variables' text and the defaults.
    /// Structs are read one by one rather than nested with `#[serde(flatten)]`,
    /// which would lose the variable's name from the error.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        self.0
            .clone()
            .try_deserialize()
            .map_err(|error| SettingsError(error.to_string()))
    }

    /// Every variable whose name (in lower case) starts with `prefix`: the rest
    /// of its name and its trimmed text, blank ones left out.
    pub fn texts_starting_with(&self, prefix: &str) -> Vec<(String, String)> {
        let Ok(all) = self.0.clone().try_deserialize::<FileValues>() else {
            return Vec::new();
        };
        let mut found: Vec<(String, String)> = all
            .into_iter()
            .filter_map(|(key, value)| {
                let rest = key.strip_prefix(prefix)?.to_owned();
                let text = value.into_string().ok()?.trim().to_owned();
                (!text.is_empty() && !rest.is_empty()).then_some((rest, text))
            })
            .collect();
        found.sort();
        found
    }

    /// One variable's text (`key` in lower case), trimmed; `None` when unset or
    /// blank (as in `.env` files). For variables whose names are made at run time.
    pub fn text(&self, key: &str) -> Option<String> {
        let text = self.0.get_string(key).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }
}

/// A duration in seconds, possibly fractional (`0.05`); negative, infinite or
/// non-numeric text is refused.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` is not a non-negative number of seconds"))
}

/// A number of any type that parses from text.
pub fn parse_number<T>(text: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    text.trim()
        .parse()
        .map_err(|error| format!("`{text}` is not valid: {error}"))
}

/// A duration in seconds, possibly fractional (`0.05`); negative, infinite or
/// non-numeric values are refused.
pub fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_seconds(&String::deserialize(deserializer)?).map_err(D::Error::custom)
}

/// A number of any type that parses from text (`u16`, `usize`, `u32`, ...).
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    parse_number(&String::deserialize(deserializer)?).map_err(D::Error::custom)
}

/// Limits that keep slow or idle clients from starving others, the same
/// variables in every HTTP process.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// A request head must arrive within this (`HTTP_HEAD_TIMEOUT`).
    #[serde(rename = "http_head_timeout", deserialize_with = "seconds")]
    pub head_timeout: Duration,
    /// A request body must arrive within this (`HTTP_BODY_TIMEOUT`).
    #[serde(rename = "http_body_timeout", deserialize_with = "seconds")]
    pub body_timeout: Duration,
    /// An idle keep-alive connection is closed after this (`HTTP_KEEP_ALIVE`).
    #[serde(rename = "http_keep_alive", deserialize_with = "seconds")]
    pub keep_alive: Duration,
}

/// The documented defaults.
impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(60),
        }
    }
}

impl HttpSettings {
    /// The documented defaults, to put among a process's own variables.
    pub const DEFAULTS: [(&str, &str); 3] = [
        ("http_head_timeout", "10"),
        ("http_body_timeout", "30"),
        ("http_keep_alive", "60"),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Example {
        #[serde(deserialize_with = "number")]
        port: u16,
    }

    fn read_example(pairs: &[(&str, &str)]) -> Result<(Example, HttpSettings), SettingsError> {
        let mut defaults = vec![("port", "8000")];
        defaults.extend(HttpSettings::DEFAULTS);
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let source = super::read(&defaults, Variables::Map(map))?;
        Ok((source.get()?, source.get()?))
    }

    #[test]
    fn unset_variables_take_the_defaults_and_durations_may_be_fractional() {
        let (example, http) = read_example(&[("HTTP_BODY_TIMEOUT", " 0.05 ")]).unwrap();
        assert_eq!(example.port, 8000);
        assert_eq!(http.head_timeout, Duration::from_secs(10));
        assert_eq!(http.body_timeout, Duration::from_millis(50));
        assert_eq!(http.keep_alive, Duration::from_secs(60));
    }

    #[test]
    fn a_settings_file_is_read_as_tables_and_texts() {
        let path = std::env::temp_dir().join(format!("settings-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "port = 8080\nratio = 0.5\nlist = [\"a\", 404]\nflag = true\n[table]\nkey = \"v\"\n",
        )
        .unwrap();
        let file = read_file(path.to_str().unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let text = |key: &str| file_text(&file[key]);
        assert_eq!(text("port").as_deref(), Some("8080"));
        assert_eq!(text("ratio").as_deref(), Some("0.5"));
        assert_eq!(text("list").as_deref(), Some("a,404"));
        assert_eq!(text("flag").as_deref(), Some("true"));
        assert_eq!(text("table"), None);
        let error = read_file("/nonexistent/settings.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/settings.toml"), "{error}");
    }

    #[test]
    fn variables_can_be_listed_by_prefix() {
        let map = [
            ("SOURCE_A_HEADER_X_KEY", " k "),
            ("SOURCE_A_URL", "u"),
            ("SOURCE_A_HEADER_Y", " "),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let source = super::read(&[], Variables::Map(map)).unwrap();
        assert_eq!(
            source.texts_starting_with("source_a_header_"),
            [("x_key".to_owned(), "k".to_owned())]
        );
    }

    #[test]
    fn nonsense_is_refused_naming_the_variable() {
        for (variable, value) in [
            ("PORT", "99999"),
            ("HTTP_HEAD_TIMEOUT", "-1"),
            ("HTTP_BODY_TIMEOUT", "soon"),
            ("HTTP_KEEP_ALIVE", "inf"),
        ] {
            let error = read_example(&[(variable, value)]).unwrap_err().to_string();
            assert!(
                error.contains(&variable.to_lowercase()),
                "{variable}={value}: {error}"
            );
        }
    }
}
