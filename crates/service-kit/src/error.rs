/// An error and its causes on one line, for logs (`a: b: c`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chain_lists_every_cause_in_order() {
        let outer = OuterError(std::io::Error::other("connection refused"));
        assert_eq!(
            super::error_chain(&outer),
            "cannot connect: connection refused"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect")]
    struct OuterError(#[source] std::io::Error);
}
