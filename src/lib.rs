//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod dockerconfig;
pub mod ecr;
pub mod error;
pub mod k8s_grammar;
pub mod metrics;
pub mod namespaces;
pub mod progress;
pub mod pullsecret;
pub mod report;
pub mod sensitive;
pub mod serviceaccount;
pub mod shutdown;
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

use std::io::{IsTerminal as _, Write as _};

use cli::{Cli, Command, OutputFormat};
use report::{Render, SyncReport};

/// Runs the parsed command, prints its report on stdout, and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let Cli { global, command } = cli;
    let json_logs = global.log_format == telemetry::LogFormat::Json;
    if progress::wanted(
        std::io::stderr().is_terminal(),
        global.output == OutputFormat::Text,
        !json_logs,
    ) {
        progress::enable();
    }
    // sync and prune write, so a signal must not cut them off mid-namespace; status only reads.
    let stop = || {
        shutdown::on_signals().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; a signal will end the run at once");
            shutdown::Stop::never()
        })
    };
    let report: Box<dyn Render> = match command {
        Command::Sync(args) => {
            let (name, dry_run) = (args.target.secret_name.clone(), args.dry_run);
            let (push, started) = (args.metrics.clone(), std::time::Instant::now());
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::sync::run(&opts, &stop()).await,
                Err(e) => Err(e),
            };
            let report = result.unwrap_or_else(|e| SyncReport::fatal("sync", name, dry_run, &e));
            metrics::push(&push, &global, &report, started.elapsed()).await;
            Box::new(report)
        }
        Command::Prune(args) => {
            let (name, dry_run) = (args.target.secret_name.clone(), args.dry_run);
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::prune::run(&opts, &stop()).await,
                Err(e) => Err(e),
            };
            Box::new(result.unwrap_or_else(|e| SyncReport::fatal("prune", name, dry_run, &e)))
        }
        Command::Completions(args) => {
            let script = cmd::completions::completions(args.shell.into());
            return cmd::completions::print(Ok(script));
        }
        Command::Man(args) => {
            let page = cmd::completions::man(args.page.map(cli::ManPage::subcommand));
            return cmd::completions::print(page);
        }
        Command::Status(args) => {
            let name = args.target.secret_name.clone();
            let result = match args.into_options(&global) {
                Ok(opts) => cmd::status::run(&opts).await,
                Err(e) => Err(e),
            };
            Box::new(result.unwrap_or_else(|e| cmd::status::StatusReport::fatal(name, &e)))
        }
    };
    let out = match (global.output, report.fatal()) {
        (format, Some(e)) => {
            // Plain for people, structured for log collectors; text stdout stays empty.
            if json_logs {
                tracing::error!(kind = e.kind, "{}", e.message);
            } else {
                eprintln!("error: {}", e.message);
            }
            // What was done before the error is still reported.
            match format {
                OutputFormat::Json => Some(report.to_json()),
                OutputFormat::Text => report.has_results().then(|| report.to_text()),
            }
        }
        (OutputFormat::Json, None) => Some(report.to_json()),
        (OutputFormat::Text, None) => Some(report.to_text()),
    };
    if let Some(out) = out {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }
    report.exit_code()
}
