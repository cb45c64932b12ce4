//! Logging: `tracing` to stderr, as text or JSON, filtered by `RUST_LOG` (default `info` for
//! this tool, `warn` for libraries).

use std::io::{IsTerminal, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,ecr_refresh=info"))
}

/// At trace level the AWS SDK logs whole HTTP responses, token included. Spans and events of
/// the SDK and smithy crates (`aws_*` targets) above debug are dropped by their target, in a
/// filter of its own that no RUST_LOG directive (target, span or field) can widen.
pub fn sdk_event_allowed(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("aws_") && *meta.level() > Level::DEBUG)
}

/// Hides the password of every `user:password@host` in a log line, with or without a scheme:
/// libraries log URLs and connection-pool keys (`("https", user:password@host)`) at debug
/// level, from the kubeconfig's server and from `AWS_ENDPOINT_URL*`. A word runs up to a
/// character that cannot be in a URL's authority, and its password from the first `:` to the
/// last `@`.
pub fn redact_userinfo(line: &str) -> String {
    let ends_word = |c: char| c.is_whitespace() || "/\\\"<>[]{}`|".contains(c);
    let mut out = String::with_capacity(line.len());
    for word in line.split_inclusive(ends_word) {
        let masked = word.rfind('@').and_then(|at| {
            let colon = word[..at].find(':')?;
            Some(format!("{}***{}", &word[..=colon], &word[at..]))
        });
        out.push_str(masked.as_deref().unwrap_or(word));
    }
    out
}

/// A writer that passes each log line through [`redact_userinfo`]. The formatter writes one
/// whole event per `write` call.
pub struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        self.0.write_all(redact_userinfo(&line).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Drops an SDK event that quotes a failed `credential_process`'s stderr: the SDK puts it in
/// the error it logs as a warning, and a helper may print anything there, a secret included.
/// The run's own error says the helper failed, without it.
struct NoHelperOutput;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoHelperOutput {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if !event.metadata().target().starts_with("aws_") {
            return true;
        }
        let mut quoted = QuotesHelperOutput(false);
        event.record(&mut quoted);
        !quoted.0
    }
}

struct QuotesHelperOutput(bool);

impl tracing::field::Visit for QuotesHelperOutput {
    fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 |= format!("{value:?}").contains("Stderr:");
    }
}

pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let fmt = tracing_subscriber::fmt::layer()
        // stderr, taking turns with the progress line at a terminal, with no password in it.
        .with_writer(Redacting(crate::progress::Stderr))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter_fn(sdk_event_allowed))
        .with(NoHelperOutput)
        .with(filter(rust_log.as_deref()))
        .with(fmt)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Cs;
    impl tracing::Callsite for Cs {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static CS: Cs = Cs;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new(
            "e",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&CS)),
            Kind::EVENT,
        )
    }

    #[test]
    fn aws_targets_stop_at_debug() {
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_sdk_ecr::operation",
            "aws_config",
            "aws_sigv4::http_request",
        ] {
            assert!(!sdk_event_allowed(&meta(target, Level::TRACE)), "{target}");
            assert!(sdk_event_allowed(&meta(target, Level::DEBUG)), "{target}");
        }
        assert!(sdk_event_allowed(&meta("ecr_refresh::cmd", Level::TRACE)));
        assert!(sdk_event_allowed(&meta("hyper_util::client", Level::TRACE)));
    }

    #[test]
    fn passwords_in_urls_and_pool_keys_are_masked() {
        for (line, want) in [
            (
                r#"pooling idle connection for ("http", kubeuser:KUBEPW@127.0.0.1:6443)"#,
                r#"pooling idle connection for ("http", kubeuser:***@127.0.0.1:6443)"#,
            ),
            (
                r#"will apply endpoint Endpoint { url: "http://a:AWSPW@h:1/x", headers: {} }"#,
                r#"will apply endpoint Endpoint { url: "http://a:***@h:1/x", headers: {} }"#,
            ),
            (
                r#"{"endpoint":"Some(\"https://u:p%40ss@h\")"}"#,
                r#"{"endpoint":"Some(\"https://u:***@h\")"}"#,
            ),
            // A raw `@` in the password: masked up to the last one.
            ("to u:p@ss@host:443 now", "to u:***@host:443 now"),
        ] {
            assert_eq!(redact_userinfo(line), want);
        }
        for plain in [
            "namespace done namespace=team-a",
            "user@host:22 and [::1]:5000 at 16:35:05Z",
            "git@github.com:org/repo",
        ] {
            assert_eq!(redact_userinfo(plain), plain);
        }
    }

    #[test]
    fn the_writer_masks_what_it_passes_on() {
        let mut out = RedactingWriter(Vec::new());
        let line = b"DEBUG reuse idle connection for (\"https\", u:SECRET@h:443)\n";
        assert_eq!(out.write(line).unwrap(), line.len());
        let written = String::from_utf8(out.0).unwrap();
        assert!(!written.contains("SECRET"), "{written}");
        assert!(written.contains("u:***@h:443"), "{written}");
    }

    #[test]
    fn default_filter() {
        assert_eq!(filter(None).to_string(), "ecr_refresh=info,warn");
        assert_eq!(
            filter(Some("[not valid")).to_string(),
            "ecr_refresh=info,warn"
        );
    }
}
