//! What a source is sent, and what is kept of its answer (`SOURCE_<NAME>_METHOD`,
//! `_URL`, `_BODY`, `_SELECT`, `_INTO`): the shapes real enrichment APIs have.
//!
//! - **Placeholders.** `{email}`, `{address.city}`, ... (every name of
//!   [`Field::NAMES`]) in the URL are replaced by the normalised profile's value,
//!   percent-encoded so that only RFC 3986's unreserved characters stay as they
//!   are (`+` becomes `%2B`, `@` `%40`). In a body template, a string that is
//!   exactly one placeholder takes the field's JSON value and type (`"{age}"` ->
//!   `41`); other strings are filled as text. A placeholder whose field the
//!   profile lacks means the source is not called for it (`skipped`).
//! - **The URL's origin is fixed.** Scheme, host and port may hold no
//!   placeholder: a profile never chooses where the enricher sends its requests.
//! - **Selection.** `_SELECT` is an RFC 6901 JSON pointer into the answer; what it
//!   points at is copied byte for byte. Nothing there, or `null`, means the source
//!   knows nothing of the profile (`not_found`), as `{"data": null}` or an empty
//!   result list says in many APIs. `_INTO` puts the selected value under one key
//!   of `enrichment`; without it the selected value must be an object, whose
//!   members are merged.

use std::borrow::Cow;
use std::sync::Arc;

use domain::{Field, FieldValue, Profile};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// RFC 3986's unreserved characters are the only ones left as they are.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HTTP method of a source's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "GET" => Ok(Method::Get),
            "POST" => Ok(Method::Post),
            _ => Err(format!(
                "`{text}` is not a method a source can use (GET or POST)"
            )),
        }
    }

    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        }
    }
}

/// Text with placeholders, checked once at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Text(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(Field),
}

impl Text {
    /// Splits `text` at its `{name}` placeholders; an unknown name or a brace
    /// that opens or closes no placeholder is refused.
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("`}}` closes no placeholder in `{text}`"));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{{` opens a placeholder that never closes in `{text}`"))?;
            let name = &rest[open + 1..open + close];
            let field = Field::from_name(name).ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    Field::NAMES.map(|name| format!("{{{name}}}")).join(", ")
                )
            })?;
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            parts.push(Part::Field(field));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Text(parts))
    }

    fn is_literal(&self) -> bool {
        self.0.iter().all(|part| matches!(part, Part::Literal(_)))
    }

    /// The text with every placeholder replaced by `value(field)`; `None` when a
    /// field has no value.
    fn fill<'p>(&self, mut value: impl FnMut(Field) -> Option<Cow<'p, str>>) -> Option<String> {
        let mut filled = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(literal) => filled.push_str(literal),
                Part::Field(field) => filled.push_str(&value(*field)?),
            }
        }
        Some(filled)
    }
}

/// `SOURCE_<NAME>_URL`: an absolute http(s) URL, possibly with placeholders after
/// its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlTemplate {
    text: Text,
    /// The URL itself when it has no placeholder (the usual case: no work per call).
    fixed: Option<Url>,
}

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let text = Text::parse(template.trim())?;
        let sample = |value: &'static str| {
            let filled = text
                .fill(|_| Some(Cow::Borrowed(value)))
                .unwrap_or_default();
            Url::parse(&filled).map_err(|error| format!("`{template}` is not a URL: {error}"))
        };
        let (one, other) = (sample("a")?, sample("b")?);
        if !matches!(one.scheme(), "http" | "https") {
            return Err(format!("`{template}` is not an http or https URL"));
        }
        if one.origin() != other.origin() || one.username() != other.username() {
            return Err(format!(
                "`{template}` has a placeholder before its path: a profile may not choose the host"
            ));
        }
        let fixed = text.is_literal().then_some(one);
        Ok(Self { text, fixed })
    }

    /// A URL without placeholders.
    pub fn fixed(url: Url) -> Self {
        Self {
            text: Text(vec![Part::Literal(url.as_str().to_owned())]),
            fixed: Some(url),
        }
    }

    /// The URL when it has no placeholder.
    pub fn as_fixed(&self) -> Option<&Url> {
        self.fixed.as_ref()
    }

    /// The URL for `profile`, each value percent-encoded; `None` when a field is
    /// absent from the profile.
    pub fn fill(&self, profile: &Profile) -> Option<Url> {
        let filled = self.text.fill(|field| {
            let value = profile.field(field)?;
            Some(Cow::Owned(
                utf8_percent_encode(&value.text(), COMPONENT).to_string(),
            ))
        })?;
        // The origin was checked at start-up and only unreserved characters and
        // `%XX` were added, so this parses; if it ever does not, the source is
        // not called rather than called somewhere unchecked.
        Url::parse(&filled).ok()
    }
}

impl std::str::FromStr for UrlTemplate {
    type Err = String;

    fn from_str(template: &str) -> Result<Self, String> {
        Self::parse(template)
    }
}

/// `SOURCE_<NAME>_BODY`: a JSON template, or (unset) the whole `user`.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    WholeUser,
    Json(Node),
}

/// A JSON template, its strings' placeholders resolved at start-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Fixed(Value),
    /// A string that is exactly one placeholder: the field's JSON value.
    Field(Field),
    Text(Text),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl BodyTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(template).map_err(|error| format!("not JSON: {error}"))?;
        Ok(BodyTemplate::Json(Node::parse(value)?))
    }

    /// The body for `profile`, or `None` when a field is absent from it.
    pub fn fill(&self, profile: &Profile) -> Option<Vec<u8>> {
        match self {
            // The caller sends the user it already encoded.
            BodyTemplate::WholeUser => None,
            BodyTemplate::Json(node) => serde_json::to_vec(&node.fill(profile)?).ok(),
        }
    }
}

impl Node {
    fn parse(value: Value) -> Result<Self, String> {
        Ok(match value {
            Value::String(text) => {
                let parsed = Text::parse(&text)?;
                match parsed.0.as_slice() {
                    [Part::Field(field)] => Node::Field(*field),
                    _ if parsed.is_literal() => Node::Fixed(Value::String(text)),
                    _ => Node::Text(parsed),
                }
            }
            Value::Array(items) => Node::Array(
                items
                    .into_iter()
                    .map(Node::parse)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(members) => Node::Object(
                members
                    .into_iter()
                    .map(|(key, value)| Ok((key, Node::parse(value)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => Node::Fixed(other),
        })
    }

    fn fill(&self, profile: &Profile) -> Option<Value> {
        Some(match self {
            Node::Fixed(value) => value.clone(),
            Node::Field(field) => match profile.field(*field)? {
                FieldValue::Text(text) => Value::String(text.into_owned()),
                FieldValue::Number(number) => Value::from(number),
            },
            Node::Text(text) => Value::String(
                text.fill(|field| Some(Cow::Owned(profile.field(field)?.text().into_owned())))?,
            ),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.fill(profile))
                    .collect::<Option<_>>()?,
            ),
            Node::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, node)| Some((key.clone(), node.fill(profile)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }
}

/// `SOURCE_<NAME>_SELECT`: an RFC 6901 JSON pointer, its tokens unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Pointer(Vec::new()));
        }
        let Some(tokens) = text.strip_prefix('/') else {
            return Err(format!(
                "`{text}` is not a JSON pointer: it must start with `/`"
            ));
        };
        tokens
            .split('/')
            .map(|token| {
                let mut unescaped = String::with_capacity(token.len());
                let mut chars = token.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '~') {
                        (_, false) => unescaped.push(c),
                        (_, true) => match chars.next() {
                            Some('0') => unescaped.push('~'),
                            Some('1') => unescaped.push('/'),
                            _ => {
                                return Err(format!(
                                    "`{text}` is not a JSON pointer: `~` must be followed by 0 or 1"
                                ));
                            }
                        },
                    }
                }
                Ok(unescaped)
            })
            .collect::<Result<_, _>>()
            .map(Pointer)
    }

    /// The value the pointer names in `answer`, as its bytes; `None` when there
    /// is none.
    pub fn select<'a>(&self, answer: &'a RawValue) -> Option<&'a RawValue> {
        self.0.iter().try_fold(answer, |value, token| {
            let mut deserializer = serde_json::Deserializer::from_str(value.get());
            let found = match value.get().as_bytes().first() {
                Some(b'{') => Member(token).deserialize(&mut deserializer),
                Some(b'[') => Element(array_index(token)?).deserialize(&mut deserializer),
                _ => return None,
            };
            found.ok().flatten()
        })
    }
}

/// RFC 6901: an array index is `0` or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0')))
        .then(|| token.parse().ok())
        .flatten()
}

/// The value of one member of a JSON object (the last, should the key repeat).
struct Member<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// One element of a JSON array.
struct Element(usize);

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Element {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut index = 0;
        while index <= self.0 {
            if index == self.0 {
                found = seq.next_element::<&'de RawValue>()?;
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

/// What is kept of a source's JSON answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerShape {
    pub select: Option<Pointer>,
    pub into: Option<String>,
}

/// A shaped answer.
pub enum Shaped {
    /// The object merged into `enrichment`.
    Object(Arc<RawValue>),
    /// Nothing (or `null`) where `_SELECT` points.
    Nothing,
    /// The selected value is not an object and there is no `_INTO` to hold it.
    NotAnObject,
}

impl AnswerShape {
    /// The answer as it is when nothing is to be selected or wrapped.
    pub fn is_verbatim(&self) -> bool {
        self.select.is_none() && self.into.is_none()
    }

    /// `answer` (any JSON value) shaped by `_SELECT` and `_INTO`.
    pub fn shape(&self, answer: &RawValue) -> Shaped {
        let selected = match &self.select {
            Some(pointer) => match pointer.select(answer) {
                Some(value) if value.get() != "null" => value,
                _ => return Shaped::Nothing,
            },
            None => answer,
        };
        let object = match &self.into {
            Some(key) => {
                let key = serde_json::to_string(key).unwrap_or_else(|_| String::from("\"\""));
                format!("{{{key}:{}}}", selected.get())
            }
            None if selected.get().starts_with('{') => selected.get().to_owned(),
            None => return Shaped::NotAnObject,
        };
        match RawValue::from_string(object) {
            Ok(object) => Shaped::Object(Arc::from(object)),
            Err(_) => Shaped::NotAnObject,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn profile(value: Value) -> Profile {
        Profile::from_json(&serde_json::to_vec(&value).unwrap()).unwrap()
    }

    fn someone() -> Profile {
        profile(
            json!({"userId": "u/1 é", "username": "ann.b", "email": " Ann+News@Example.COM ",
            "age": 41, "address": {"street": "1 Main St", "city": "São Paulo", "postalCode": "01000-000"}}),
        )
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn url_placeholders_are_percent_encoded_keeping_only_unreserved_characters() {
        let template = UrlTemplate::parse(
            "https://api.example/v5/person/{userId}?email={email}&city={address.city}&zip={address.zip_code}",
        )
        .unwrap();
        assert_eq!(template.as_fixed(), None);
        assert_eq!(
            template.fill(&someone()).unwrap().as_str(),
            "https://api.example/v5/person/u%2F1%20%C3%A9?email=ann%2Bnews%40example.com\
             &city=S%C3%A3o%20Paulo&zip=01000-000"
        );
    }

    #[test]
    fn a_url_needing_a_field_the_profile_lacks_is_not_made() {
        let template =
            UrlTemplate::parse("http://geo.example/search?state={address.state}").unwrap();
        assert_eq!(template.fill(&someone()), None);
        let template = UrlTemplate::parse("http://geo.example/search").unwrap();
        assert_eq!(
            template.as_fixed().map(Url::as_str),
            Some("http://geo.example/search")
        );
    }

    #[test]
    fn nonsense_urls_are_refused() {
        for (template, because) in [
            (
                "http://api.example/{password}",
                "unknown placeholder `{password}`",
            ),
            ("http://api.example/{email", "never closes"),
            ("http://api.example/email}", "closes no placeholder"),
            ("http://{email}/x", "may not choose the host"),
            ("http://api.example:{age}/x", "is not a URL"),
            ("ftp://api.example/{email}", "not an http or https URL"),
            ("api.example/{email}", "is not a URL"),
        ] {
            let error = UrlTemplate::parse(template).unwrap_err();
            assert!(error.contains(because), "{template}: {error}");
        }
    }

    #[test]
    fn a_placeholder_alone_in_a_body_string_keeps_its_json_type_others_are_text() {
        let template = BodyTemplate::parse(
            r#"{"email": "{email}", "age": "{age}", "greeting": "Hi {username}, {age}!",
                "tags": ["fixed", "{address.city}", 3, null], "nested": {"zip": "{address.postalCode}"}}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&template.fill(&someone()).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"email": "ann+news@example.com", "age": 41, "greeting": "Hi ann.b, 41!",
                   "tags": ["fixed", "São Paulo", 3, null], "nested": {"zip": "01000-000"}})
        );
        let needs_state = BodyTemplate::parse(r#"{"state": "{address.state}"}"#).unwrap();
        assert_eq!(needs_state.fill(&someone()), None);
        assert!(BodyTemplate::parse(r#"{"a": "{nope}"}"#).is_err());
        assert!(BodyTemplate::parse("{not json").is_err());
    }

    #[test]
    fn a_pointer_selects_the_value_byte_for_byte() {
        let answer = raw(
            r#"{"data": {"name": "x", "score": 2.50}, "list": [{"a": 1}, [7]], "a/b": {"~": 3}}"#,
        );
        let select = |pointer: &str| {
            Pointer::parse(pointer)
                .unwrap()
                .select(&answer)
                .map(|value| value.get().to_owned())
        };
        assert_eq!(
            select("/data").as_deref(),
            Some(r#"{"name": "x", "score": 2.50}"#)
        );
        assert_eq!(select("/data/score").as_deref(), Some("2.50"));
        assert_eq!(select("/list/0/a").as_deref(), Some("1"));
        assert_eq!(select("/list/1/0").as_deref(), Some("7"));
        assert_eq!(select("/a~1b/~0").as_deref(), Some("3"));
        assert_eq!(select("").as_deref(), Some(answer.get()));
        for missing in [
            "/nope",
            "/list/2",
            "/list/01",
            "/list/-",
            "/data/name/x",
            "/list/x",
        ] {
            assert_eq!(select(missing), None, "{missing}");
        }
        assert!(Pointer::parse("data").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }

    #[test]
    fn into_wraps_the_selection_and_nothing_or_null_is_not_found() {
        let shape = |select: Option<&str>, into: Option<&str>| AnswerShape {
            select: select.map(|pointer| Pointer::parse(pointer).unwrap()),
            into: into.map(str::to_owned),
        };
        let answer = raw(r#"{"data": [1, 2], "person": {"n": 1}, "none": null}"#);
        let text = |shaped: Shaped| match shaped {
            Shaped::Object(object) => object.get().to_owned(),
            Shaped::Nothing => "nothing".to_owned(),
            Shaped::NotAnObject => "not an object".to_owned(),
        };
        assert_eq!(
            text(shape(Some("/data"), Some("pe\"ople")).shape(&answer)),
            r#"{"pe\"ople":[1, 2]}"#
        );
        assert_eq!(
            text(shape(Some("/person"), None).shape(&answer)),
            r#"{"n": 1}"#
        );
        assert_eq!(
            text(shape(Some("/data"), None).shape(&answer)),
            "not an object"
        );
        assert_eq!(
            text(shape(Some("/none"), Some("x")).shape(&answer)),
            "nothing"
        );
        assert_eq!(text(shape(Some("/gone"), None).shape(&answer)), "nothing");
        assert_eq!(
            text(shape(None, Some("all")).shape(&answer)),
            format!(r#"{{"all":{}}}"#, answer.get())
        );
        assert!(shape(None, None).is_verbatim());
    }

    #[test]
    fn methods_are_get_or_post_in_any_case() {
        assert_eq!(Method::parse("get"), Ok(Method::Get));
        assert_eq!(Method::parse(" POST "), Ok(Method::Post));
        assert!(Method::parse("DELETE").is_err());
    }
}
