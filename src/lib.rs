//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

mod bornlinked;
mod children;
pub mod cli;
mod cluster;
mod cmd;
mod dockerconfig;
mod ecr;
mod error;
pub mod k8s_grammar;
mod kubeauth;
mod metrics;
mod namespaces;
mod progress;
mod pullsecret;
mod report;
mod sensitive;
mod serviceaccount;
mod shutdown;
mod stdio;
mod stuckpods;
pub mod telemetry;
#[cfg(test)]
mod testing;

pub(crate) use error::{Error, Result};

use std::io::IsTerminal as _;

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
    // Known before anything runs: a report nobody can read is refused like bad input.
    let closed = stdio::stdout_was_closed();
    let open = || {
        if closed {
            Err(Error::StdoutClosed)
        } else {
            Ok(())
        }
    };
    // A command that fails before it runs still reports, under its own name, with its time.
    let started = std::time::Instant::now();
    let fatal = |command, name, dry_run, e: &Error| {
        let mut report = RunReport::fatal(command, name, dry_run, e);
        report.end.duration_seconds = seconds(started);
        report
    };
    let mut pushed = None;
    let report = match command {
        Command::Sync(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            pushed = Some(args.metrics.clone());
            let result = async {
                open()?;
                cmd::sync::run(&args.into_options(&global)?, &stop()).await
            };
            Report::Run((result.await).unwrap_or_else(|e| fatal("sync", name, dry_run, &e)))
        }
        Command::Prune(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            let result = async {
                open()?;
                cmd::prune::run(&args.into_options(&global)?, &stop()).await
            };
            Report::Run((result.await).unwrap_or_else(|e| fatal("prune", name, dry_run, &e)))
        }
        Command::Status(args) => {
            let name = args.scope.target.secret_name.clone();
            shutdown::exit_on_signals();
            let result = async {
                open()?;
                cmd::status::run(&args.into_options(&global)?).await
            };
            Report::Status((result.await).unwrap_or_else(|e| {
                let mut report = StatusReport::fatal(name, &e);
                report.end.duration_seconds = seconds(started);
                report
            }))
        }
        Command::Completions(args) => {
            if let Err(e) = open() {
                return refuse(&e, json_logs);
            }
            let script = cmd::completions::completions(args.shell.into());
            return cmd::completions::print(Ok(script));
        }
        Command::Man(args) => {
            if let Err(e) = open() {
                return refuse(&e, json_logs);
            }
            let page = cmd::completions::man(args.page.map(cli::ManPage::subcommand));
            return cmd::completions::print(page);
        }
    };
    // The helpers the run started (exec plugin, credential_process) end with it.
    children::kill_all();
    let code = print(&report, global.output, json_logs, !closed);
    if let (Some(push), Report::Run(mut report)) = (pushed, report) {
        // Pushed whatever the outcome, a fatal error or a lost report included.
        report.end.exit_code = code;
        metrics::push(&push, &global, &report, started.elapsed()).await;
    }
    code
}

/// Prints the report on stdout (unless it is closed) and any fatal error on stderr, and
/// returns the exit code: the report's, or 1 when a report that says 0 could not be written.
fn print(report: &Report, format: OutputFormat, json_logs: bool, stdout_open: bool) -> u8 {
    let out = match (format, report.fatal_error()) {
        (format, Some(e)) => {
            say_error(json_logs, e.kind, &e.message);
            // What was done before the error is still reported.
            match format {
                OutputFormat::Json => Some(report.to_json()),
                OutputFormat::JsonLine => Some(report.to_json_line()),
                OutputFormat::Text => report.has_results().then(|| report.to_text()),
            }
        }
        (OutputFormat::Json, None) => Some(report.to_json()),
        (OutputFormat::JsonLine, None) => Some(report.to_json_line()),
        (OutputFormat::Text, None) => Some(report.to_text()),
    };
    let written = match out {
        Some(out) if stdout_open => stdio::write_report(&out),
        _ => Ok(()),
    };
    match written {
        Ok(()) => report.exit_code(),
        Err(e) => {
            let message = format!("cannot write the report to stdout: {e}");
            say_error(json_logs, "report_lost", &message);
            report.exit_code().max(error::exit::NAMESPACE_FAILED)
        }
    }
}

/// A command refused before it ran, with no report to print.
fn refuse(e: &Error, json_logs: bool) -> u8 {
    say_error(json_logs, e.kind(), &e.to_string());
    e.exit_code()
}

/// Plain for people, structured for log collectors.
fn say_error(json_logs: bool, kind: &str, message: &str) {
    if json_logs {
        tracing::error!(kind, "{message}");
    } else {
        eprintln!("error: {message}");
    }
}

fn seconds(started: std::time::Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}
