//! The declared sources: `ENRICHMENT_SOURCES` and each one's `SOURCE_<NAME>_*`
//! variables, over the `enrichment_sources` list and `[sources.<name>]` tables
//! of the `ENRICHER_CONFIG` file (a variable overrides the file's value, so a
//! Secret can supply the key a ConfigMap'd file leaves out). Nonsense stops the
//! process at start, naming the source and the key, never a header's value.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use service_kit::settings::{self, FileValues, file_text};

use crate::enrichment::request::{AnswerShape, BodyTemplate, Method, Pointer, UrlTemplate};

/// One named source of `ENRICHMENT_SOURCES`. An unset value falls back to the
/// single-source variable of the same meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSettings {
    /// Lower-case letters, digits and `_`, starting with a letter; the key of the
    /// answer's `sources` and the `<NAME>` of its variables (in upper case).
    pub name: String,
    /// `_METHOD`: `POST` (default) or `GET`.
    pub method: Method,
    /// `_URL` (placeholders allowed), else `EXTERNAL_API_URL` (else our own
    /// `/dummy-enrich`).
    pub url: Option<UrlTemplate>,
    /// `_BODY` (POST only): a JSON template; default the whole `user`.
    pub body: BodyTemplate,
    /// `_HEADER_<H>` (`headers` in the file): sent on every call, values
    /// marked sensitive so that no `Debug` prints them.
    pub headers: HeaderMap,
    /// `_SELECT` and `_INTO`.
    pub answer: AnswerShape,
    /// `_NOT_FOUND`: statuses meaning "nothing known of this profile" (default 404).
    pub not_found: Vec<StatusCode>,
    /// `_RATE_LIMIT`: calls per second at most, from the whole process.
    pub rate_limit: Option<f64>,
    /// `_TIMEOUT`, else `EXTERNAL_API_TIMEOUT`.
    pub attempt_timeout: Option<Duration>,
    /// `_MAX_RETRIES`, else `MAX_RETRIES`.
    pub max_retries: Option<u32>,
    /// `_MAX_CONCURRENCY`, else `MAX_CONCURRENCY`.
    pub max_concurrency: Option<usize>,
    /// `_REQUIRED` (default true): whether the source's failure fails the
    /// request, or only marks it `"failed"` in the answer.
    pub required: bool,
}

impl SourceSettings {
    /// A required source called as the single source always was: POST of the
    /// whole `user`, its object merged as it is, with every value from the
    /// single-source variables.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            method: Method::Post,
            url: None,
            body: BodyTemplate::WholeUser,
            headers: HeaderMap::new(),
            answer: AnswerShape::default(),
            not_found: vec![StatusCode::NOT_FOUND],
            rate_limit: None,
            attempt_timeout: None,
            max_retries: None,
            max_concurrency: None,
            required: true,
        }
    }
}

/// The keys of a `[sources.<name>]` table; each is also `SOURCE_<NAME>_<KEY>`
/// (`headers` is `SOURCE_<NAME>_HEADER_<H>`, one variable per header).
const KEYS: [&str; 12] = [
    "method",
    "url",
    "body",
    "headers",
    "select",
    "into",
    "not_found",
    "rate_limit",
    "timeout",
    "max_retries",
    "max_concurrency",
    "required",
];

/// Headers that would break the framing of the request or its routing.
const FORBIDDEN_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// The `ENRICHER_CONFIG` file, checked: its top-level settings as texts, and its
/// sources' tables.
pub struct File {
    path: String,
    texts: Vec<(String, String)>,
    sources: BTreeMap<String, FileValues>,
}

impl File {
    /// Reads the file at `path`; a top-level key for which `known` is false,
    /// or an unknown key of a source's table, is refused naming it.
    pub fn read(path: &str, known: impl Fn(&str) -> bool) -> anyhow::Result<Self> {
        let values = settings::read_file(path).context("ENRICHER_CONFIG")?;
        let mut texts = Vec::new();
        let mut sources = BTreeMap::new();
        for (key, value) in values {
            if key == "sources" {
                let tables = value
                    .into_table()
                    .map_err(|_| anyhow::anyhow!("{path}: `sources` must be a table of sources"))?;
                for (name, table) in tables {
                    let table = table
                        .into_table()
                        .map_err(|_| anyhow::anyhow!("{path}: `sources.{name}` must be a table"))?;
                    if let Some(unknown) = table.keys().find(|key| !KEYS.contains(&key.as_str())) {
                        bail!(
                            "{path}: `sources.{name}.{unknown}` is not a source setting (known: {})",
                            KEYS.join(", ")
                        );
                    }
                    sources.insert(name.to_ascii_lowercase(), table);
                }
                continue;
            }
            ensure!(
                known(&key),
                "{path}: `{key}` is not a setting of the enricher (settings are the variables' names in lower case)"
            );
            let text = file_text(&value).with_context(|| {
                format!("{path}: `{key}` must be a value or a list, not a table")
            })?;
            texts.push((key, text));
        }
        Ok(Self {
            path: path.to_owned(),
            texts,
            sources,
        })
    }

    /// Whether the file's own `enrichment_sources` names `source`.
    fn declares(&self, source: &str) -> bool {
        self.texts
            .iter()
            .find(|(key, _)| key == "enrichment_sources")
            .is_some_and(|(_, list)| {
                list.split(',')
                    .any(|name| name.trim().eq_ignore_ascii_case(source))
            })
    }

    /// The top-level settings, as variables' texts.
    pub fn texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.texts
            .iter()
            .map(|(key, text)| (key.as_str(), text.as_str()))
    }
}

/// A value and where it was given, to name it in a refusal.
struct Given {
    text: String,
    origin: String,
}

impl Given {
    /// The value parsed, or a refusal naming where it was given.
    fn parse<T>(&self, parse: impl FnOnce(&str) -> Result<T, String>) -> anyhow::Result<T> {
        parse(&self.text)
            .map_err(anyhow::Error::msg)
            .with_context(|| self.origin.clone())
    }
}

/// `404, 410`: statuses from 200 to 599.
fn statuses(list: &str) -> Result<Vec<StatusCode>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(|code| {
            code.parse::<u16>()
                .ok()
                .filter(|code| (200..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or_else(|| format!("`{code}` is not a status from 200 to 599"))
        })
        .collect()
}

/// A positive number of calls per second, at most a million.
fn calls_per_second(text: &str) -> Result<f64, String> {
    let rate: f64 = settings::parse_number(text)?;
    if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
        Ok(rate)
    } else {
        Err(format!(
            "`{text}` calls per second must be above 0 and at most 1000000"
        ))
    }
}

/// Every declared source, in declared order. Each error names its variable
/// (or the file's key).
pub fn declared(
    variables: &settings::Source,
    file: Option<&File>,
) -> anyhow::Result<Vec<SourceSettings>> {
    let Some(list) = variables.text("enrichment_sources") else {
        if let Some((file, name)) = file.and_then(|f| Some((f, f.sources.keys().next()?))) {
            bail!(
                "{}: `sources.{name}` is given but enrichment_sources is not set",
                file.path
            );
        }
        return Ok(Vec::new());
    };
    let mut sources: Vec<SourceSettings> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let name = name.to_ascii_lowercase();
        ensure!(
            is_source_name(&name),
            "ENRICHMENT_SOURCES: `{name}` is not a source name (letters, digits and `_`, \
             starting with a letter, at most 32)"
        );
        ensure!(
            sources.iter().all(|source| source.name != name),
            "ENRICHMENT_SOURCES: `{name}` is declared twice"
        );
        let table = file.and_then(|file| Some((file, file.sources.get(&name)?)));
        sources.push(source(&name, variables, table)?);
    }
    // A table for a source the file declares but the environment's list leaves
    // out is a source turned off, not a mistake.
    if let Some(file) = file
        && let Some(stray) = file
            .sources
            .keys()
            .find(|name| sources.iter().all(|source| &source.name != *name) && !file.declares(name))
    {
        bail!(
            "{}: `sources.{stray}` is not in enrichment_sources ({list})",
            file.path
        );
    }
    if let [only] = sources.as_slice() {
        ensure!(
            only.required,
            "SOURCE_{}_REQUIRED=false needs a second source in ENRICHMENT_SOURCES: \
             the one source is always required",
            only.name.to_ascii_uppercase()
        );
    }
    Ok(sources)
}

fn source(
    name: &str,
    variables: &settings::Source,
    table: Option<(&File, &FileValues)>,
) -> anyhow::Result<SourceSettings> {
    let upper = name.to_ascii_uppercase();
    let given = |key: &str| -> anyhow::Result<Option<Given>> {
        if let Some(text) = variables.text(&format!("source_{name}_{key}")) {
            return Ok(Some(Given {
                text,
                origin: format!("SOURCE_{upper}_{}", key.to_ascii_uppercase()),
            }));
        }
        let Some((file, value)) = table.and_then(|(file, table)| Some((file, table.get(key)?)))
        else {
            return Ok(None);
        };
        let origin = format!("{}: sources.{name}.{key}", file.path);
        let text = match (key, &value.kind) {
            // A body may be written as a TOML table: it is that JSON object.
            ("body", config::ValueKind::Table(_)) => {
                let json: serde_json::Value = value
                    .clone()
                    .try_deserialize()
                    .with_context(|| origin.clone())?;
                json.to_string()
            }
            _ => file_text(value)
                .with_context(|| format!("{origin}: must be a value or a list, not a table"))?,
        };
        Ok(Some(Given { text, origin }))
    };
    let mut source = SourceSettings::named(name);
    if let Some(given) = given("method")? {
        source.method = given.parse(Method::parse)?;
    }
    if let Some(given) = given("url")? {
        source.url = Some(given.parse(UrlTemplate::parse)?);
    }
    if let Some(given) = given("body")? {
        ensure!(
            source.method == Method::Post,
            "{}: a GET source sends no body",
            given.origin
        );
        source.body = given.parse(BodyTemplate::parse)?;
    }
    source.headers = headers(name, variables, table)?;
    if let Some(given) = given("select")? {
        source.answer.select = Some(given.parse(Pointer::parse)?);
    }
    if let Some(given) = given("into")? {
        source.answer.into = Some(given.text);
    }
    if let Some(given) = given("not_found")? {
        source.not_found = given.parse(statuses)?;
    }
    if let Some(given) = given("rate_limit")? {
        source.rate_limit = Some(given.parse(calls_per_second)?);
    }
    if let Some(given) = given("timeout")? {
        source.attempt_timeout = Some(given.parse(settings::parse_seconds)?);
    }
    if let Some(given) = given("max_retries")? {
        source.max_retries = Some(given.parse(settings::parse_number)?);
    }
    if let Some(given) = given("max_concurrency")? {
        source.max_concurrency = Some(given.parse(settings::parse_number)?);
    }
    if let Some(given) = given("required")? {
        source.required = given.parse(parse_flag)?;
    }
    Ok(source)
}

/// The file's `headers` table, then the `SOURCE_<NAME>_HEADER_<H>` variables
/// (`_` in H becoming `-`), a variable replacing the file's header of the same
/// name. A refusal names the header, never its value.
fn headers(
    name: &str,
    variables: &settings::Source,
    table: Option<(&File, &FileValues)>,
) -> anyhow::Result<HeaderMap> {
    let mut given: Vec<(String, String, String)> = Vec::new();
    if let Some((file, headers)) =
        table.and_then(|(file, table)| Some((file, table.get("headers")?)))
    {
        let origin = format!("{}: sources.{name}.headers", file.path);
        let headers = headers
            .clone()
            .into_table()
            .map_err(|_| anyhow::anyhow!("{origin} must be a table of header names and values"))?;
        for (header, value) in headers {
            let value = value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{origin}.{header} must be text"))?;
            given.push((header.clone(), value, format!("{origin}.{header}")));
        }
    }
    let upper = name.to_ascii_uppercase();
    for (suffix, value) in variables.texts_starting_with(&format!("source_{name}_header_")) {
        let origin = format!("SOURCE_{upper}_HEADER_{}", suffix.to_ascii_uppercase());
        given.push((suffix.replace('_', "-"), value, origin));
    }
    let mut headers = HeaderMap::new();
    for (header, value, origin) in given {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| anyhow::anyhow!("{origin}: `{header}` is not a header name"))?;
        ensure!(
            !FORBIDDEN_HEADERS.contains(&header.as_str()),
            "{origin}: `{header}` is set by the HTTP client, not by a source's settings"
        );
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| anyhow::anyhow!("{origin}: the value is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

fn is_source_name(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}
