//! A wrapper for secret material whose `Debug` and `Display` never show the value.

use std::fmt;

/// Holds a token, password or payload. Formatting prints `(redacted)`; the value is only
/// reachable through [`Sensitive::expose`], which makes every use easy to audit.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    pub(crate) fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Sensitive::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "(redacted)");
        assert_eq!(format!("{s}"), "(redacted)");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    (redacted),\n)");
        assert_eq!(s.expose(), "hunter2");
    }
}
