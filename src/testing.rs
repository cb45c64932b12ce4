//! Helpers for the unit tests.

use std::str::FromStr;

/// Every `ok` parses as a `T`, and no `bad` does.
pub(crate) fn assert_parses<T: FromStr>(ok: &[&str], bad: &[&str]) {
    for s in ok {
        assert!(s.parse::<T>().is_ok(), "{s:?} should parse");
    }
    for s in bad {
        assert!(s.parse::<T>().is_err(), "{s:?} should be rejected");
    }
}
