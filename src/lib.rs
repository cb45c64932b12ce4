//! ecr-refresh: keeps Amazon ECR pull secrets fresh in Kubernetes clusters outside AWS.
//!
//! `main.rs` only parses flags and maps the result to an exit code; the work lives here.

mod argocd;
mod bornlinked;
mod children;
pub mod cli;
mod cluster;
mod cmd;
mod dockerconfig;
mod ecr;
mod error;
mod events;
pub mod k8s_grammar;
mod kubeauth;
mod metrics;
mod namespaces;
mod oidc;
mod progress;
mod pullsecret;
mod report;
mod sensitive;
mod serviceaccount;
mod shutdown;
mod stdio;
mod stuckpods;
pub mod telemetry;
mod tenants;
#[cfg(test)]
mod testing;

pub(crate) use error::{Error, Result};

use std::io::IsTerminal as _;

use std::time::Instant;

use cli::{Cli, Command, GlobalArgs, OutputFormat};
use cmd::{prune::PruneOptions, status::StatusOptions, sync::SyncOptions};
use metrics::PushTarget;
use report::{Report, RunReport, StatusReport};

/// Runs the parsed command, prints its report on stdout, and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let Cli { global, command } = cli;
    let json_logs = global.log_format == cli::LogFormat::Json;
    if progress::wanted(
        std::io::stderr().is_terminal(),
        global.output == OutputFormat::Text,
        !json_logs,
    ) {
        progress::enable();
    }
    // Known before anything runs: a report nobody can read is refused like bad input.
    let closed = stdio::stdout_was_closed();
    let started = Instant::now();
    let job = match resolve(command, &global, closed) {
        Resolved::Run(job) => *job,
        Resolved::Oidc(job) => return oidc(job, global.output, json_logs).await,
        Resolved::Print(text) => return cli::completions::print(text),
        Resolved::Refuse(e) => return refuse(&e, json_logs),
    };
    let push = job.push.clone();
    let report = dispatch(job, started).await;
    // The helpers the run started (exec plugin, credential_process) end with it.
    children::kill_all();
    let code = print(&report, global.output, json_logs, !closed);
    if let (Some(push), Report::Run(report)) = (push, report) {
        // Pushed whatever the outcome, a fatal error or a lost report included: with the code
        // the process exits with.
        metrics::push(&push, &report, code, started.elapsed()).await;
    }
    code
}

/// A command as the layers below take it: its options, or the error that stops it before it
/// runs, and what its report names either way.
struct Job {
    options: Options,
    secret_name: String,
    dry_run: bool,
    /// Where `sync` pushes its metrics.
    push: Option<PushTarget>,
}

enum Options {
    /// Boxed: the largest by far.
    Sync(Box<Result<SyncOptions>>),
    Prune(Result<PruneOptions>),
    Status(Result<StatusOptions>),
}

/// What the command line comes to before anything runs.
enum Resolved {
    /// `sync`, `prune` or `status`: a run that ends in a report, even when its options were
    /// refused (the report names the command).
    Run(Box<Job>),
    /// `oidc publish` or `oidc check`.
    Oidc(cli::OidcJob),
    /// The text `completions` or `man` prints instead of a report.
    Print(std::io::Result<Vec<u8>>),
    /// Refused before anything ran, with no report: stdout was closed.
    Refuse(Error),
}

/// The flags as plain options, each command's cross-flag checks made. `completions` and `man`
/// need no more than their text.
fn resolve(command: Command, global: &GlobalArgs, closed: bool) -> Resolved {
    let open = || {
        if closed {
            Err(Error::StdoutClosed)
        } else {
            Ok(())
        }
    };
    let generated = |text: Result<std::io::Result<Vec<u8>>>| match text {
        Ok(text) => Resolved::Print(text),
        Err(e) => Resolved::Refuse(e),
    };
    let job = |options, secret_name, dry_run| Job {
        options,
        secret_name,
        dry_run,
        push: None,
    };
    Resolved::Run(Box::new(match command {
        Command::Sync(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            let push = args.metrics.clone().into_target(global);
            let options = open().and_then(|()| args.into_options(global));
            Job {
                push,
                ..job(Options::Sync(Box::new(options)), name, dry_run)
            }
        }
        Command::Prune(args) => {
            let (name, dry_run) = (args.scope.target.secret_name.clone(), args.dry_run);
            let options = open().and_then(|()| args.into_options(global));
            job(Options::Prune(options), name, dry_run)
        }
        Command::Status(args) => {
            let name = args.scope.target.secret_name.clone();
            let options = open().and_then(|()| args.into_options(global));
            job(Options::Status(options), name, false)
        }
        Command::Completions(args) => {
            let shell = args.shell.into();
            return generated(open().map(|()| Ok(cli::completions::completions(shell))));
        }
        Command::Man(args) => {
            let page = args.page.map(cli::ManPage::subcommand);
            return generated(open().map(|()| cli::completions::man(page)));
        }
        Command::Oidc(args) => {
            return match open() {
                Ok(()) => Resolved::Oidc(args.into_job(global)),
                Err(e) => Resolved::Refuse(e),
            }
        }
    }))
}

/// `oidc publish` or `oidc check`: its text or JSON on stdout, its error on stderr, its code.
async fn oidc(job: cli::OidcJob, format: OutputFormat, json_logs: bool) -> u8 {
    let done = match job {
        cli::OidcJob::Publish(opts) => cmd::oidc::publish(&opts)
            .await
            .map(|p| (p.to_text(), p.to_json(), error::exit::OK)),
        cli::OidcJob::Check(opts) => cmd::oidc::check(&opts)
            .await
            .map(|c| (c.to_text(), c.to_json(), c.exit_code())),
    };
    match done {
        Ok((text, json, code)) => {
            let out = match format {
                OutputFormat::Text => text,
                OutputFormat::Json => format!("{json:#}\n"),
                OutputFormat::JsonLine => format!("{json}\n"),
            };
            match stdio::write_report(&out) {
                Ok(()) => code,
                Err(e) => {
                    let message = format!("cannot write the report to stdout: {e}");
                    say_error(json_logs, "report_lost", &message);
                    code.max(error::exit::NAMESPACE_FAILED)
                }
            }
        }
        Err(e) => refuse(&e, json_logs),
    }
}

/// Runs the command. One that fails before it runs still reports, under its own name, with
/// its time.
async fn dispatch(job: Job, started: Instant) -> Report {
    let Job {
        options,
        secret_name,
        dry_run,
        push: _,
    } = job;
    // sync and prune write, so a signal must not cut them off mid-namespace; status only reads.
    let stop = || {
        shutdown::on_signals().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; a signal will end the run at once");
            shutdown::Stop::never()
        })
    };
    let fatal = |command, e: Error| {
        let mut report = RunReport::fatal(command, secret_name.clone(), dry_run, &e);
        report.end.duration_seconds = seconds(started);
        report
    };
    match options {
        Options::Sync(opts) => {
            let result = async { cmd::sync::run(&(*opts)?, &stop()).await };
            Report::Run(result.await.unwrap_or_else(|e| fatal("sync", e)))
        }
        Options::Prune(opts) => {
            let result = async { cmd::prune::run(&opts?, &stop()).await };
            Report::Run(result.await.unwrap_or_else(|e| fatal("prune", e)))
        }
        Options::Status(opts) => {
            shutdown::exit_on_signals();
            let result = async { cmd::status::run(&opts?).await };
            Report::Status(result.await.unwrap_or_else(|e| {
                let mut report = StatusReport::fatal(secret_name.clone(), &e);
                report.end.duration_seconds = seconds(started);
                report
            }))
        }
    }
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

fn seconds(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}
