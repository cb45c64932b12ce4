//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod dockerconfig;
pub mod ecr;
pub mod error;
pub mod namespaces;
pub mod pullsecret;
pub mod report;
pub mod sensitive;
pub mod serviceaccount;
pub mod telemetry;

pub use error::{Error, Result};

/// The field manager for every write, so server-side apply can tell our fields from others'.
pub const FIELD_MANAGER: &str = "ecr-refresh";
/// Marks the Secrets this tool owns; a Secret without it is never touched unless `--force`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "ecr-refresh";
/// When the token in the Secret expires (RFC 3339).
pub const EXPIRES_AT_ANNOTATION: &str = "ecr-refresh/expires-at";
/// The registry hosts the Secret covers, comma-separated.
pub const REGISTRIES_ANNOTATION: &str = "ecr-refresh/registries";

use std::io::Write as _;

use cli::{Cli, Command, OutputFormat};
use report::SyncReport;

/// Runs the parsed command, prints its report on stdout, and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let Cli { global, command } = cli;
    let json_logs = global.log_format == telemetry::LogFormat::Json;
    let fatal = |e: &Error| {
        // Plain for people, structured for log collectors.
        if json_logs {
            tracing::error!(kind = e.kind(), "{e}");
        } else {
            eprintln!("error: {e}");
        }
    };
    let (text, json, code) = match command {
        Command::Sync(args) => {
            let (name, dry_run) = (args.target.secret_name.clone(), args.dry_run);
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::sync::run(&opts).await,
                Err(e) => Err(e),
            };
            let report = result.unwrap_or_else(|e| {
                fatal(&e);
                SyncReport::fatal("sync", name, dry_run, &e)
            });
            (
                report.error.is_none().then(|| report.to_text()),
                report.to_json(),
                report.exit_code,
            )
        }
        Command::Prune(args) => {
            let (name, dry_run) = (args.target.secret_name.clone(), args.dry_run);
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::prune::run(&opts).await,
                Err(e) => Err(e),
            };
            let report = result.unwrap_or_else(|e| {
                fatal(&e);
                SyncReport::fatal("prune", name, dry_run, &e)
            });
            (
                report.error.is_none().then(|| report.to_text()),
                report.to_json(),
                report.exit_code,
            )
        }
        Command::Status(args) => {
            let name = args.target.secret_name.clone();
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::status::run(&opts).await,
                Err(e) => Err(e),
            };
            let report = result.unwrap_or_else(|e| {
                fatal(&e);
                cmd::status::StatusReport::fatal(name, &e)
            });
            (
                report.error.is_none().then(|| report.to_text()),
                report.to_json(),
                report.exit_code,
            )
        }
    };
    // After a fatal error, text mode prints nothing on stdout: the error is on stderr.
    let out = match global.output {
        OutputFormat::Json => Some(json + "\n"),
        OutputFormat::Text => text,
    };
    if let Some(out) = out {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }
    code
}
