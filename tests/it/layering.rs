//! The layering rule, checked the way Kubernetes' import-boss checks its packages: only the
//! top of the house (`main.rs`, `lib.rs` and `src/cli/`) may name `clap` or the `cli` module.
//! Every module below takes plain settings that it defines itself, so a flag can be renamed,
//! and `ecr` or `metrics` used or tested, without clap.
//!
//! The judgement (`pullsecret/judge.rs`) and the other pure modules work on plain values: they
//! never name the cluster client, kube's `Api` or the ECR client, so they are unit-tested
//! without a server.
//!
//! Comments and string literals are not code: a doc comment may still say "clap".

use std::path::{Path, PathBuf};

use crate::common::suite;

/// A restriction: code that `check` finds is allowed only in the files under `allowed`, and
/// never in those under `pure`.
struct Rule {
    what: &'static str,
    check: fn(&[Token]) -> bool,
    allowed: &'static [&'static str],
    pure: &'static [&'static str],
}

/// The top of the house: the only places that know about flags.
const TOP: &[&str] = &["src/main.rs", "src/lib.rs", "src/cli/"];

/// Judgement over plain data: no I/O, no client.
const PURE: &[&str] = &[
    "src/pullsecret/judge.rs",
    "src/serviceaccount/plan.rs",
    "src/dockerconfig.rs",
    "src/k8s_grammar/",
];

const RULES: &[Rule] = &[
    Rule {
        what: "names clap (clap, clap_complete or clap_mangen)",
        check: names_clap,
        allowed: TOP,
        pure: &[],
    },
    Rule {
        what: "imports from the cli module",
        check: names_cli_module,
        allowed: TOP,
        pure: &[],
    },
    Rule {
        what: "names a client (Cluster, kube's Api or Client, the ECR client or LazyDesired)",
        check: names_a_client,
        allowed: &["src/"],
        pure: PURE,
    },
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

#[test]
fn only_the_top_names_clap_or_cli_and_judgement_names_no_client() {
    let _suite = suite::shared_blocking();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "too few files under src/: {files:?}");
    let mut violations = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(file).unwrap();
        violations.extend(violations_in(&rel, &source));
    }
    assert!(
        violations.is_empty(),
        "layering violations (see tests/it/layering.rs):\n  {}",
        violations.join("\n  ")
    );
}

/// What `source`, at `rel` (`src/...`), breaks.
fn violations_in(rel: &str, source: &str) -> Vec<String> {
    let tokens = tokenize(source);
    RULES
        .iter()
        .filter(|rule| {
            !rule.allowed.iter().any(|a| rel.starts_with(a))
                || rule.pure.iter().any(|p| rel.starts_with(p))
        })
        .filter(|rule| (rule.check)(&tokens))
        .map(|rule| {
            let pure = if rule.pure.is_empty() {
                String::new()
            } else {
                format!(" and never {}", rule.pure.join(", "))
            };
            format!(
                "{rel} {}; only {} may{pure}",
                rule.what,
                rule.allowed.join(", ")
            )
        })
        .collect()
}

fn names_clap(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        matches!(t, Token::Ident(name) if ["clap", "clap_complete", "clap_mangen"].contains(&name.as_str()))
    })
}

fn names_a_client(tokens: &[Token]) -> bool {
    const CLIENTS: [&str; 7] = [
        "Cluster",
        "Api",
        "Client",
        "EcrClientConfig",
        "LazyDesired",
        "aws_sdk_ecr",
        "aws_config",
    ];
    tokens
        .iter()
        .any(|t| matches!(t, Token::Ident(name) if CLIENTS.contains(&name.as_str())))
}

/// `crate::cli`, `super::cli`, `cli::X`, or `cli` inside a `use` group (`use crate::{cli, ..}`).
fn names_cli_module(tokens: &[Token]) -> bool {
    let cli = Token::Ident("cli".into());
    let mut in_use = false;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Ident(word) if word == "use" => in_use = true,
            Token::Punct(';') => in_use = false,
            _ if *t == cli => {
                let after_path = i > 0 && tokens[i - 1] == Token::Path;
                let before_path = tokens.get(i + 1) == Some(&Token::Path);
                if in_use || after_path || before_path {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Rust source as identifiers, `::` and punctuation, without comments, strings and chars.
fn tokenize(source: &str) -> Vec<Token> {
    let s: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            i = skip_while(&s, i, |c| c != '\n');
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&s, i);
        } else if c == '"' {
            i = skip_string(&s, i + 1, 0);
        } else if let Some(end) = raw_string(&s, i) {
            i = end;
        } else if c == '\'' {
            i = skip_char_or_lifetime(&s, i);
        } else if c.is_alphabetic() || c == '_' {
            let end = skip_while(&s, i, |c| c.is_alphanumeric() || c == '_');
            tokens.push(Token::Ident(s[i..end].iter().collect()));
            i = end;
        } else if c == ':' && next == Some(':') {
            tokens.push(Token::Path);
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    tokens
}

fn skip_while(s: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < s.len() && keep(s[i]) {
        i += 1;
    }
    i
}

/// Block comments nest in Rust.
fn skip_block_comment(s: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < s.len() {
        match (s[i], s.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// From just after the opening quote to just after the closing one and its `hashes` #s.
fn skip_string(s: &[char], mut i: usize, hashes: usize) -> usize {
    while i < s.len() {
        if hashes == 0 && s[i] == '\\' {
            i += 2;
            continue;
        }
        if s[i] == '"' && (0..hashes).all(|k| s.get(i + 1 + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// `r"..."`, `r#"..."#`, `br"..."`: where it ends, if one starts at `i`.
fn raw_string(s: &[char], i: usize) -> Option<usize> {
    let starts_word = i == 0 || !(s[i - 1].is_alphanumeric() || s[i - 1] == '_');
    let mut j = i + usize::from(s[i] == 'b');
    if !starts_word || s.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = skip_while(s, j, |c| c == '#') - j;
    (s.get(j + hashes) == Some(&'"')).then(|| skip_string(s, j + hashes + 1, hashes))
}

/// `'a'`, `'\n'`, `'\u{1F600}'` are chars; `'a` is a lifetime.
fn skip_char_or_lifetime(s: &[char], i: usize) -> usize {
    if s.get(i + 1) == Some(&'\\') {
        return skip_while(s, i + 2, |c| c != '\'') + 1;
    }
    if s.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    i + 1
}

#[test]
fn the_check_sees_each_way_of_naming_them() {
    let _suite = suite::shared_blocking();
    let bad = [
        "use clap::Args;",
        "#[derive(clap::ValueEnum)] enum A {}",
        "fn f() { clap_complete::generate(); }",
        "use crate::cli::AwsArgs;",
        "use crate::{cli, ecr};",
        "use super::super::cli;",
        "fn f(a: &crate::cli::GlobalArgs) {}",
        "fn f(a: cli::GlobalArgs) {}",
    ];
    for code in bad {
        assert!(
            !violations_in("src/ecr/client.rs", code).is_empty(),
            "not seen: {code}"
        );
        assert!(
            violations_in("src/cli/options.rs", code).is_empty(),
            "{code}"
        );
        assert!(violations_in("src/lib.rs", code).is_empty(), "{code}");
    }
    let fine = [
        "// clap parses this; see crate::cli::AwsArgs",
        "/* clap /* nested */ crate::cli */ fn f() {}",
        r#"const S: &str = "use clap::Args; crate::cli";"#,
        "const S: &str = r#\"clap \" crate::cli\"#;",
        "fn f<'a>(cli: &'a str, c: char) -> bool { let x = '\\''; cli.is_empty() }",
        "use crate::client::Client;",
    ];
    for code in fine {
        assert!(
            violations_in("src/ecr/client.rs", code).is_empty(),
            "seen wrongly: {code}"
        );
    }
}

#[test]
fn the_judgement_may_not_name_a_client() {
    let _suite = suite::shared_blocking();
    let bad = [
        "fn f(c: &Cluster) {}",
        "fn f(c: &crate::cluster::Cluster) {}",
        "use kube::Api;",
        "fn f(api: kube::api::Api<Secret>) {}",
        "fn f(c: kube::Client) {}",
        "fn f(l: &LazyDesired) {}",
        "use crate::ecr::EcrClientConfig;",
        "fn f(c: &aws_sdk_ecr::Client) {}",
    ];
    for code in bad {
        let seen = violations_in("src/pullsecret/judge.rs", code);
        assert!(
            seen.iter()
                .any(|v| v.contains("never src/pullsecret/judge.rs")),
            "not seen: {code}: {seen:?}"
        );
        assert!(
            violations_in("src/pullsecret/calls.rs", code).is_empty(),
            "{code}"
        );
    }
    // The cluster module's constants are plain values.
    let fine = "use crate::cluster::FIELD_MANAGER; // not the Cluster";
    assert!(violations_in("src/pullsecret/judge.rs", fine).is_empty());
}

/// How a test may begin: with the suite's lock (common/suite.rs), or with the one helper that
/// takes it exclusive and hands it back.
const TAKES_THE_SUITE: &[&str] = &[
    "let _suite = suite::shared().await;",
    "let _suite = suite::shared_blocking();",
    "let _suite = suite::exclusive().await;",
    "let Some((_suite, client)) = policy_server().await else {",
];

/// The tests that do not begin by taking the suite's lock, as `file: test`.
fn tests_without_the_suite(file: &str, code: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut rest = code;
    // Attributes at the start of a line: not the ones in this file's string literals.
    while let Some(at) = [rest.find("\n#[test]"), rest.find("\n#[tokio::test")]
        .into_iter()
        .flatten()
        .min()
    {
        rest = &rest[at..];
        let body = rest.find('{').map_or("", |b| &rest[b + 1..]);
        let name = rest
            .split_once("fn ")
            .and_then(|(_, s)| s.split(|c: char| !c.is_alphanumeric() && c != '_').next())
            .unwrap_or("?");
        // Up to the next test: taking the lock a second time would wait for itself.
        let next = [
            rest[2..].find("\n#[test]"),
            rest[2..].find("\n#[tokio::test"),
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or(rest.len(), |n| n + 2);
        let takes = lock_takings(&tokenize(&rest[..next]));
        if !TAKES_THE_SUITE
            .iter()
            .any(|t| body.trim_start().starts_with(t))
        {
            missing.push(format!("{file}: {name}"));
        } else if takes != 1 {
            missing.push(format!("{file}: {name} (takes it {takes} times)"));
        }
        rest = &rest[2..];
    }
    missing
}

/// How many times this code takes the suite's lock (string literals and comments aside).
fn lock_takings(tokens: &[Token]) -> usize {
    let ident =
        |t: &Token, names: &[&str]| matches!(t, Token::Ident(i) if names.contains(&i.as_str()));
    tokens
        .windows(3)
        .filter(|w| {
            ident(&w[0], &["suite"])
                && w[1] == Token::Path
                && ident(&w[2], &["shared", "shared_blocking", "exclusive"])
        })
        .count()
        + tokens
            .iter()
            .filter(|t| ident(t, &["policy_server"]))
            .count()
}

/// Tests run side by side in one binary, so one that forgot the lock would run beside `prune`
/// over every namespace or the policies that bind cluster-wide, and fail now and then.
#[test]
fn every_integration_test_takes_the_suite_lock_first() {
    let _suite = suite::shared_blocking();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut missing = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let code = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            seen += code.matches("\n#[test]").count() + code.matches("\n#[tokio::test").count();
            missing.extend(tests_without_the_suite(&file, &code));
        }
    }
    assert!(
        seen > 100,
        "only {seen} tests found under {}",
        dir.display()
    );
    assert!(
        missing.is_empty(),
        "these tests do not begin with the suite's lock (see common/suite.rs):\n  {}",
        missing.join("\n  ")
    );
    // The check itself: a test that begins with anything else is named.
    let forgot = "\n#[tokio::test]\nasync fn forgot() {\n    let client = admin().await;\n}\n#[test]\nfn fine() {\n    let _suite = suite::shared_blocking();\n}\n";
    assert_eq!(tests_without_the_suite("x.rs", forgot), ["x.rs: forgot"]);
    let twice = "\n#[tokio::test]\nasync fn twice() {\n    let _suite = suite::shared().await;\n    let _suite = suite::exclusive().await;\n}\n";
    assert_eq!(
        tests_without_the_suite("x.rs", twice),
        ["x.rs: twice (takes it 2 times)"]
    );
}
