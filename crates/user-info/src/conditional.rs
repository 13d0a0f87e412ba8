//! Conditional requests (RFC 9110, section 13) on a user's version: its strong
//! ETag is `"<version>"`; `If-Match` compares strongly (a weak tag never
//! matches), `If-None-Match` weakly. Parsing only: the store checks the
//! preconditions in the statement that writes.
//!
//! A field value that is not `*` or a list of entity tags is not refused: it
//! names no version, so it matches nothing - `If-Match` then never holds
//! (nothing is written, 412) and `If-None-Match` always does. Either way no
//! write happens that the client's condition could have meant to stop.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use user_store::{Preconditions, Versions};

/// The grammar of both headers (`*`, or a list of entity tags), as the OpenAPI
/// document states it.
pub const ETAG_LIST_PATTERN: &str =
    r#"^(\*|(W/)?"[\x21\x23-\x7e]*"([ \t]*,[ \t]*(W/)?"[\x21\x23-\x7e]*")*)$"#;

/// The strong ETag of a version.
pub fn etag(version: i64) -> HeaderValue {
    // Digits between quotes are always a valid header value.
    HeaderValue::try_from(format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-Match` and `If-None-Match` of a request.
pub fn preconditions(headers: &HeaderMap) -> Preconditions {
    Preconditions {
        if_match: versions(headers, &header::IF_MATCH, true),
        if_none_match: versions(headers, &header::IF_NONE_MATCH, false),
    }
}

/// The versions a header names (every line of it); `strong` drops weak tags,
/// which never match strongly. Tags that are not ours (not exactly the decimal
/// text of a version) and values that are not entity tags match nothing.
fn versions(headers: &HeaderMap, name: &HeaderName, strong: bool) -> Option<Versions> {
    let mut listed = Vec::new();
    let mut any = false;
    let mut seen = false;
    for value in headers.get_all(name) {
        seen = true;
        match value.to_str().ok().and_then(parse_list) {
            Some(None) => any = true,
            Some(Some(tags)) => listed.extend(
                tags.into_iter()
                    .filter(|tag| !(strong && tag.weak))
                    .filter_map(|tag| tag.version()),
            ),
            None => {}
        }
    }
    match (seen, any) {
        (false, _) => None,
        (true, true) => Some(Versions::Any),
        (true, false) => Some(Versions::Listed(listed)),
    }
}

struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

impl EntityTag<'_> {
    /// The version whose ETag this tag is. Entity tags compare character by
    /// character (RFC 9110, section 8.8.3.2): only the version's own decimal
    /// text names it, so `"01"` or `"+1"` is not version 1.
    fn version(&self) -> Option<i64> {
        let version: i64 = self.opaque.parse().ok()?;
        (version.to_string() == self.opaque).then_some(version)
    }
}

/// `*` (`Some(None)`), a non-empty list of entity tags, or `None` when
/// malformed.
fn parse_list(text: &str) -> Option<Option<Vec<EntityTag<'_>>>> {
    let text = text.trim_matches([' ', '\t']);
    if text == "*" {
        return Some(None);
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        let (weak, after) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let after = after.strip_prefix('"')?;
        let end = after.find('"')?;
        let opaque = &after[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        tags.push(EntityTag { weak, opaque });
        rest = &after[end + 1..];
        if rest.is_empty() {
            return Some(Some(tags));
        }
        let next = rest.trim_start_matches([' ', '\t']).strip_prefix(',')?;
        rest = next.trim_start_matches([' ', '\t']);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(header: &'static str, value: &'static str) -> Preconditions {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(header),
            HeaderValue::from_static(value),
        );
        preconditions(&headers)
    }

    #[test]
    fn if_match_compares_strongly_and_if_none_match_weakly() {
        let pre = parse("if-match", r#""3", W/"4", "x,y", "5""#);
        assert_eq!(pre.if_match, Some(Versions::Listed(vec![3, 5])));
        let pre = parse("if-none-match", r#"W/"4" , "7""#);
        assert_eq!(pre.if_none_match, Some(Versions::Listed(vec![4, 7])));
        let pre = parse("if-none-match", " * ");
        assert_eq!(pre.if_none_match, Some(Versions::Any));
        assert_eq!(
            parse("if-match", r#""abc""#).if_match,
            Some(Versions::Listed(vec![]))
        );
    }

    #[test]
    fn malformed_lists_match_nothing() {
        for value in [
            "3",
            r#""3"#,
            r#""3" "4""#,
            "*, \"3\"",
            "",
            r#""3",,"4""#,
            r#"w/"3""#,
        ] {
            assert!(parse_list(value).is_none(), "{value}");
            let pre = parse("if-match", value);
            assert_eq!(pre.if_match, Some(Versions::Listed(vec![])), "{value}");
        }
    }

    #[test]
    fn a_tag_names_a_version_only_when_it_is_exactly_its_etag() {
        let one = || Some(Versions::Listed(vec![1]));
        let none = || Some(Versions::Listed(vec![]));
        // (field value, If-Match, If-None-Match): If-Match compares strongly,
        // If-None-Match weakly; both compare the opaque text exactly.
        let cases = [
            (r#""1""#, one(), one()),
            (r#""01""#, none(), none()),
            (r#""+1""#, none(), none()),
            (r#"W/"01""#, none(), none()),
            (r#""-0""#, none(), none()),
            (r#""1.0""#, none(), none()),
            (r#""1 ""#, none(), none()),
            (r#"" 1""#, none(), none()),
            (r#"W/"1""#, none(), one()),
            (
                r#""0""#,
                Some(Versions::Listed(vec![0])),
                Some(Versions::Listed(vec![0])),
            ),
            (r#""99999999999999999999""#, none(), none()),
        ];
        for (value, if_match, if_none_match) in cases {
            assert_eq!(
                parse("if-match", value).if_match,
                if_match,
                "If-Match: {value}"
            );
            assert_eq!(
                parse("if-none-match", value).if_none_match,
                if_none_match,
                "If-None-Match: {value}"
            );
        }
    }

    #[test]
    fn the_etag_is_the_quoted_version() {
        assert_eq!(etag(42), "\"42\"");
    }
}
