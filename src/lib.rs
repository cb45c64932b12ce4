//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

pub mod cli;
pub mod cluster;
pub mod dockerconfig;
pub mod ecr;
pub mod error;
pub mod namespaces;
pub mod report;
pub mod sensitive;
pub mod sync;
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
    match command {
        Command::Sync(args) => {
            let secret_name = args.secret_name.clone();
            let dry_run = args.dry_run;
            let result = match args.into_options(&global) {
                Ok(opts) => sync::run(&opts).await,
                Err(e) => Err(e),
            };
            let report = match result {
                Ok(report) => report,
                Err(e) => {
                    tracing::error!("{e}");
                    SyncReport::fatal(secret_name, dry_run, &e)
                }
            };
            print_report(&report, global.output);
            report.exit_code
        }
    }
}

fn print_report(report: &SyncReport, format: OutputFormat) {
    let text = match format {
        OutputFormat::Json => report.to_json() + "\n",
        // A fatal error is already on stderr; stdout stays empty for scripts that read it.
        OutputFormat::Text if report.error.is_some() => return,
        OutputFormat::Text => report.to_text(),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
