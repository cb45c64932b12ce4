//! Logging: `tracing` to stderr, as text or JSON, filtered by `RUST_LOG` (default `info` for
//! this tool, `warn` for libraries).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// At trace level the AWS SDK logs whole HTTP responses, token included; these targets never
/// go past debug, whatever RUST_LOG says.
const CAPPED_AT_DEBUG: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sdk_ecr",
    "aws_sdk_sts",
    "aws_config",
];

pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,ecr_refresh=info"));
    if filter.max_level_hint() == Some(LevelFilter::TRACE) {
        for target in CAPPED_AT_DEBUG {
            filter =
                filter.add_directive(format!("{target}=debug").parse().expect("static directive"));
        }
    }
    filter
}

pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(rust_log.as_deref()))
        // stderr, taking turns with the progress line at a terminal.
        .with_writer(crate::progress::Stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_capped_for_the_aws_sdk() {
        for rust_log in [
            "trace",
            "aws_smithy_runtime=trace",
            "info,aws_smithy_runtime=trace",
        ] {
            let f = filter(Some(rust_log)).to_string();
            assert!(f.contains("aws_smithy_runtime=debug"), "{rust_log}: {f}");
            assert!(!f.contains("aws_smithy_runtime=trace"), "{rust_log}: {f}");
        }
        // Below trace nothing is added, so the SDK is not made chattier than asked.
        assert!(!filter(Some("warn"))
            .to_string()
            .contains("aws_smithy_runtime"));
        assert_eq!(filter(None).to_string(), "ecr_refresh=info,warn");
    }
}
