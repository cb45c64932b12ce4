//! Label selectors, checked with the apiserver's own grammar.

use std::str::FromStr;

use super::validate_dns_subdomain;

/// A Kubernetes label selector (`env=prod,tier!=db,team in (a,b),!legacy,replicas>1`),
/// checked locally with the apiserver's own grammar (k8s.io/apimachinery `labels.Parse`), so a
/// typo fails with exit 2 and everything the server accepts is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    raw: String,
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether a set of labels matches, as the apiserver decides it: every requirement holds.
    /// For tenant rules, matched here; --namespace-selector goes to the server.
    pub(crate) fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// One requirement of a selector (apimachinery `labels.Requirement`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    In,
    NotIn,
    Greater,
    Less,
}

impl Requirement {
    fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let number = || value.and_then(|v| v.parse::<i64>().ok());
        let bound = || self.values.first().and_then(|v| v.parse::<i64>().ok());
        match self.op {
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::In => value.is_some_and(|v| self.values.contains(v)),
            Op::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Op::Greater => matches!((number(), bound()), (Some(v), Some(b)) if v > b),
            Op::Less => matches!((number(), bound()), (Some(v), Some(b)) if v < b),
        }
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The server takes an empty selector as "everything"; on the command line it is far more
        // likely an unset variable, so it is refused.
        if s.trim().is_empty() {
            return Err(
                "empty label selector (leave the flag out to select every namespace)".into(),
            );
        }
        let requirements = SelectorParser::new(s).parse()?;
        Ok(Self {
            raw: s.to_string(),
            requirements,
        })
    }
}

/// The tokens of apimachinery's selector lexer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    End,
    Ident,
    In,
    NotIn,
    Comma,
    OpenPar,
    ClosedPar,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
}

fn special_token(s: &str) -> Option<Tok> {
    Some(match s {
        "," => Tok::Comma,
        "(" => Tok::OpenPar,
        ")" => Tok::ClosedPar,
        "!" => Tok::Not,
        "=" => Tok::Equals,
        "==" => Tok::DoubleEquals,
        "!=" => Tok::NotEquals,
        ">" => Tok::Greater,
        "<" => Tok::Less,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits a selector into tokens: runs of special characters by longest known operator,
/// everything else up to a space or special character as a word (`in`/`notin` are keywords).
fn lex(s: &str) -> Vec<(Tok, &str)> {
    let b = s.as_bytes();
    let (mut i, mut out) = (0, Vec::new());
    loop {
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            out.push((Tok::End, ""));
            return out;
        }
        let start = i;
        if is_special(b[i]) {
            // Every single special character is a token, so this always finds one.
            let mut best = (Tok::Comma, start + 1);
            let mut j = start;
            while j < b.len() && is_special(b[j]) {
                j += 1;
                match special_token(&s[start..j]) {
                    Some(t) => best = (t, j),
                    None => break,
                }
            }
            out.push((best.0, &s[start..best.1]));
            i = best.1;
        } else {
            while i < b.len() && !is_special(b[i]) && !is_space(b[i]) {
                i += 1;
            }
            let word = &s[start..i];
            let tok = match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            out.push((tok, word));
        }
    }
}

struct SelectorParser<'a> {
    tokens: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> SelectorParser<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            tokens: lex(s),
            pos: 0,
        }
    }

    /// The next token; where a value may stand, `in`/`notin` are plain words.
    fn peek(&self, values: bool) -> (Tok, &'a str) {
        let (tok, lit) = self.tokens[self.pos];
        match tok {
            Tok::In | Tok::NotIn if values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, values: bool) -> (Tok, &'a str) {
        let t = self.peek(values);
        if t.0 != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek(true) {
                (Tok::Ident | Tok::Not, _) => {
                    requirements.push(self.requirement()?);
                    match self.next(true) {
                        (Tok::End, _) => return Ok(requirements),
                        (Tok::Comma, _) => match self.peek(true) {
                            (Tok::Ident | Tok::Not, _) => {}
                            (_, lit) => {
                                return Err(format!(
                                    "found {lit:?}, expected: identifier after ','"
                                ))
                            }
                        },
                        (_, lit) => {
                            return Err(format!("found {lit:?}, expected: ',' or end of string"))
                        }
                    }
                }
                (Tok::End, _) => return Ok(requirements),
                (_, lit) => {
                    return Err(format!(
                        "found {lit:?}, expected: !, identifier, or end of string"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut key) = self.next(true);
        let negated = tok == Tok::Not;
        if negated {
            (tok, key) = self.next(true);
        }
        if tok != Tok::Ident {
            return Err(format!("found {key:?}, expected: identifier"));
        }
        check_label_key(key)?;
        let alone = |op| Requirement {
            key: key.to_string(),
            op,
            values: Vec::new(),
        };
        // `key` and `!key` alone; `!key` followed by anything else fails in the caller.
        if negated {
            return Ok(alone(Op::DoesNotExist));
        }
        if matches!(self.peek(true).0, Tok::End | Tok::Comma) {
            return Ok(alone(Op::Exists));
        }
        let (op, values) = match self.next(false) {
            (Tok::In, op) => (Op::In, self.set(op)?),
            (Tok::NotIn, op) => (Op::NotIn, self.set(op)?),
            (Tok::Equals | Tok::DoubleEquals, _) => (Op::In, vec![self.exact_value()?]),
            (Tok::NotEquals, _) => (Op::NotIn, vec![self.exact_value()?]),
            (tok @ (Tok::Greater | Tok::Less), op) => {
                let v = self.exact_value()?;
                if v.parse::<i64>().is_err() {
                    return Err(format!(
                        "{key}{op}{v}: {op} compares numbers, the value must be a whole number"
                    ));
                }
                let op = if tok == Tok::Greater {
                    Op::Greater
                } else {
                    Op::Less
                };
                (op, vec![v])
            }
            (_, "") => {
                return Err(format!(
                    "{key:?} needs an operator (=, ==, !=, in, notin, >, <) or a ',' before the end"
                ))
            }
            (_, lit) => {
                return Err(format!(
                    "found {lit:?} after {key:?}, expected an operator: =, ==, !=, in, notin, >, <"
                ))
            }
        };
        values.iter().copied().try_for_each(check_label_value)?;
        Ok(Requirement {
            key: key.to_string(),
            op,
            values: values.into_iter().map(str::to_string).collect(),
        })
    }

    /// `(a,b)`; empty members (`()`, `(a,)`) are the empty value, as on the server.
    fn set(&mut self, op: &str) -> Result<Vec<&'a str>, String> {
        match self.next(true) {
            (Tok::OpenPar, _) => {}
            (_, lit) => {
                return Err(format!(
                    "found {lit:?}, expected a list in parentheses after {op}, such as (a,b)"
                ))
            }
        }
        let mut values = Vec::new();
        match self.peek(true) {
            (Tok::ClosedPar, _) => {
                self.next(true);
                return Ok(vec![""]);
            }
            (Tok::Ident | Tok::Comma, _) => {}
            (_, lit) => return Err(format!("found {lit:?}, expected: ',', ')' or identifier")),
        }
        loop {
            match self.next(true) {
                (Tok::Ident, v) => {
                    values.push(v);
                    match self.peek(true) {
                        (Tok::Comma, _) => continue,
                        (Tok::ClosedPar, _) => break,
                        (_, lit) => return Err(format!("found {lit:?}, expected: ',' or ')'")),
                    }
                }
                (Tok::Comma, _) => {
                    values.push("");
                    match self.peek(true).0 {
                        Tok::ClosedPar => break,
                        Tok::Comma => {
                            self.next(true);
                        }
                        _ => {}
                    }
                }
                (_, lit) => return Err(format!("found {lit:?}, expected: ',', or identifier")),
            }
        }
        match self.next(true) {
            (Tok::ClosedPar, _) => Ok(values),
            (_, lit) => Err(format!("found {lit:?}, expected: ')'")),
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; none at all is the empty value.
    fn exact_value(&mut self) -> Result<&'a str, String> {
        match self.peek(true) {
            (Tok::End | Tok::Comma, _) => Ok(""),
            (Tok::Ident, v) => {
                self.next(true);
                Ok(v)
            }
            (_, lit) => Err(format!("found {lit:?}, expected: a value")),
        }
    }
}

fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        validate_dns_subdomain(p)
            .map_err(|_| format!("label key prefix {p:?} is not a DNS subdomain"))?;
    }
    if name.is_empty() || name.len() > 63 || !is_label_text(name) {
        return Err(format!(
            "label key {key:?} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_text(value)) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        // tests/it/selectors.rs checks a larger table against the real apiserver.
        let ok = [
            "env=prod",
            "env==prod,tier!=db",
            "team in (a, b),!legacy",
            "env in(a,b)",
            "example.com/owner notin (x)",
            "managed",
            "env=",
            "replicas>1",
            "replicas < 10",
            "in=x,!notin",
            "env in ()",
        ];
        let bad = [
            "",
            " ",
            "env=prod,",
            "team in a,b",
            "team in (a",
            "Bad Key=x",
            "env=-x-",
            "a/b/c=d",
            "=x",
            "replicas>a",
            "replicas>=1",
            "replicas>-1",
            "!a=b",
        ];
        crate::testing::assert_parses::<LabelSelector>(&ok, &bad);
    }

    #[test]
    fn selectors_match_labels_as_the_apiserver_does() {
        let labels: std::collections::BTreeMap<String, String> =
            [("team", "a"), ("env", "prod"), ("replicas", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let matches = |s: &str| s.parse::<LabelSelector>().unwrap().matches(&labels);
        for yes in [
            "team=a",
            "team==a,env=prod",
            "team in (a,b)",
            "team notin (b)",
            "missing notin (x)",
            "owner!=x",
            "team",
            "!owner",
            "replicas>2",
            "replicas<4",
        ] {
            assert!(matches(yes), "{yes}");
        }
        for no in [
            "team=b",
            "team=a,env=dev",
            "team notin (a)",
            "team!=a",
            "owner",
            "!team",
            "missing in (x)",
            "replicas>3",
            "env>1",
            "env=",
        ] {
            assert!(!matches(no), "{no}");
        }
    }

    #[test]
    fn lexer_takes_the_longest_operator() {
        let toks: Vec<_> = lex("a!=b,!c==(d)").into_iter().map(|t| t.0).collect();
        assert_eq!(
            toks,
            [
                Tok::Ident,
                Tok::NotEquals,
                Tok::Ident,
                Tok::Comma,
                Tok::Not,
                Tok::Ident,
                Tok::DoubleEquals,
                Tok::OpenPar,
                Tok::Ident,
                Tok::ClosedPar,
                Tok::End
            ]
        );
    }
}
