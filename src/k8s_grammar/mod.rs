//! Kubernetes grammar checked locally, so a typo fails with exit 2 before any call: object
//! names, namespace globs and label selectors.

use std::fmt;
use std::str::FromStr;

use globset::{Glob, GlobMatcher};

mod selector;

pub use selector::LabelSelector;

/// A namespace name or a glob (`*`, `?`, `[a-z]`, `{a,b}`) over namespace names.
#[derive(Clone)]
pub(crate) struct NamespacePattern {
    raw: String,
    glob: Option<GlobMatcher>,
}

impl NamespacePattern {
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }

    /// A pattern with no glob characters names exactly one namespace.
    pub(crate) fn literal(&self) -> Option<&str> {
        self.glob.is_none().then_some(self.raw.as_str())
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(name),
            None => self.raw == name,
        }
    }
}

impl fmt::Debug for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!', ','];

impl FromStr for NamespacePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty namespace pattern".into());
        }
        if !s.contains(GLOB_CHARS) {
            validate_dns_label(s)?;
            return Ok(Self {
                raw: s.to_string(),
                glob: None,
            });
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || GLOB_CHARS.contains(c))
        }) {
            return Err(format!(
                "{c:?} can never match: namespace names hold only lowercase letters, digits and '-'"
            ));
        }
        let glob = Glob::new(s).map_err(|e| format!("invalid glob: {}", e.kind()))?;
        Ok(Self {
            raw: s.to_string(),
            glob: Some(glob.compile_matcher()),
        })
    }
}

/// One flag value: patterns separated by commas, except the commas inside `{a,b}` and `[a,b]`,
/// which belong to the glob.
#[derive(Clone, Debug)]
pub(crate) struct PatternList(Vec<NamespacePattern>);

impl PatternList {
    pub(crate) fn flatten(lists: Vec<PatternList>) -> Vec<NamespacePattern> {
        lists.into_iter().flat_map(|l| l.0).collect()
    }
}

impl FromStr for PatternList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_outside_groups(s)
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Splits on commas outside `{}` and `[]`; an unbalanced group is left whole for the glob
/// parser to report.
fn split_outside_groups(s: &str) -> Vec<&str> {
    let (mut braces, mut brackets, mut start, mut out) = (0i32, 0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            ',' if braces <= 0 && brackets <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// RFC 1123 label: what Kubernetes accepts as a namespace or ServiceAccount name.
pub(crate) fn validate_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// RFC 1123 subdomain: what Kubernetes accepts as a Secret name.
pub(crate) fn validate_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("not a valid Kubernetes name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_lists_split_outside_groups() {
        assert_eq!(
            split_outside_groups("{a,b}-*,x-[a,b],c"),
            ["{a,b}-*", "x-[a,b]", "c"]
        );
        assert_eq!(split_outside_groups("a,,b"), ["a", "", "b"]);
        assert_eq!(split_outside_groups("{a,b"), ["{a,b"]);
        assert!("{a,b".parse::<PatternList>().is_err());
        assert!("a,,b".parse::<PatternList>().is_err());
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in ["", "[abc", "Team-A", "team_a", "a/b", "-lead", "{a,b"] {
            assert!(
                bad.parse::<NamespacePattern>().is_err(),
                "{bad} should be rejected"
            );
        }
        let err = "team_*".parse::<NamespacePattern>().unwrap_err();
        assert!(err.contains("'_'"), "{err}");
    }

    #[test]
    fn names() {
        assert!(validate_dns_subdomain("awsecr-cred").is_ok());
        assert!(validate_dns_subdomain("ecr.pull-secret").is_ok());
        for bad in ["", "Bad", "a_b", "a..b", "-a", &"a".repeat(254)] {
            assert!(validate_dns_subdomain(bad).is_err(), "{bad}");
        }
        assert!(validate_dns_label("default").is_ok());
        assert!(validate_dns_label("a.b").is_err());
    }
}
