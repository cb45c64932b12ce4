//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

mod bornlinked;
pub mod cli;
mod cluster;
mod cmd;
mod dockerconfig;
mod ecr;
mod error;
pub mod k8s_grammar;
mod metrics;
mod namespaces;
mod progress;
mod pullsecret;
mod report;
mod sensitive;
mod serviceaccount;
mod shutdown;
mod stuckpods;
pub mod telemetry;
#[cfg(test)]
mod testing;

pub(crate) use error::{Error, Result};

use std::io::{IsTerminal as _, Write as _};

use cli::{Cli, Command, OutputFormat};
use report::{Report, RunReport, StatusReport};

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
    // A command that fails before it runs still reports, under its own name.
    let report = match command {
        Command::Sync(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            let (push, started) = (args.metrics.clone(), std::time::Instant::now());
            let result = async { cmd::sync::run(&args.into_options(&global)?, &stop()).await };
            let report =
                (result.await).unwrap_or_else(|e| RunReport::fatal("sync", name, dry_run, &e));
            // Pushed whatever the outcome, a fatal error included.
            metrics::push(&push, &global, &report, started.elapsed()).await;
            Report::Run(report)
        }
        Command::Prune(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            let result = async { cmd::prune::run(&args.into_options(&global)?, &stop()).await };
            Report::Run(
                (result.await).unwrap_or_else(|e| RunReport::fatal("prune", name, dry_run, &e)),
            )
        }
        Command::Status(args) => {
            let name = args.scope.target.secret_name.clone();
            let result = async { cmd::status::run(&args.into_options(&global)?).await };
            Report::Status((result.await).unwrap_or_else(|e| StatusReport::fatal(name, &e)))
        }
        Command::Completions(args) => {
            let script = cmd::completions::completions(args.shell.into());
            return cmd::completions::print(Ok(script));
        }
        Command::Man(args) => {
            let page = cmd::completions::man(args.page.map(cli::ManPage::subcommand));
            return cmd::completions::print(page);
        }
    };
    let out = match (global.output, report.fatal_error()) {
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
