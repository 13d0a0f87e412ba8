//! Rules shared by more than one model.

/// Rejects text PostgreSQL cannot store (U+0000).
pub(crate) fn no_nul(value: &str, _: &()) -> garde::Result {
    if value.contains('\0') {
        return Err(garde::Error::new("must not contain the NUL character"));
    }
    Ok(())
}

/// Rejects text of whitespace only (the empty string is a length rule's job).
pub(crate) fn not_blank(value: &str, _: &()) -> garde::Result {
    if !value.is_empty() && value.chars().all(char::is_whitespace) {
        return Err(garde::Error::new("must not be blank"));
    }
    Ok(())
}

/// An address per the HTML5 rule (garde's), with a dotted domain as mail needs.
pub(crate) fn is_email(value: &str) -> garde::Result {
    let dotted = value
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.contains('.'));
    if garde::rules::email::parse_email(value).is_err() || !dotted {
        return Err(garde::Error::new("must be a valid e-mail address"));
    }
    Ok(())
}
