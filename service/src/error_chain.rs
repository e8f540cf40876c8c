//! An error written with all its causes, for logs and stored reasons.

/// An error with its causes, `outer: inner: innermost`, for logs and stored reasons. (Errors
/// print only their own message; the causes are their sources.)
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_chain(&error), "outer: inner");
    }
}
