//! Logging: `tracing` to stderr, as text or JSON, filtered by `RUST_LOG` (default `info` for
//! this tool, `warn` for libraries).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
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

pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let fmt = tracing_subscriber::fmt::layer()
        // stderr, taking turns with the progress line at a terminal.
        .with_writer(crate::progress::Stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter_fn(sdk_event_allowed))
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
    fn default_filter() {
        assert_eq!(filter(None).to_string(), "ecr_refresh=info,warn");
        assert_eq!(
            filter(Some("[not valid")).to_string(),
            "ecr_refresh=info,warn"
        );
    }
}
