//! Command-line flags. Every flag has an `ECR_REFRESH_*` env fallback; values are parsed into
//! types so a bad one fails before anything runs.
//!
//! `args` holds the clap definitions and their help text, `values` the flag values with rules
//! of their own, and `options` the cross-flag checks that build each command's options.

mod args;
pub(crate) mod completions;
mod help;
mod oidc;
mod options;
mod services;
mod values;

pub use args::{
    AwsArgs, Cli, Command, CompletionShell, CompletionsArgs, GlobalArgs, LedgerArgs, LogFormat,
    ManArgs, ManPage, OutputFormat, PruneArgs, PushArgs, RunArgs, ScopeArgs, SelectionArgs,
    StatusArgs, SyncArgs, TargetArgs,
};
pub(crate) use oidc::OidcJob;
pub use oidc::{IssuerArgs, OidcArgs, OidcCheckArgs, OidcCommand, OidcPublishArgs};

/// `ecr-refresh ARGS...` as clap parses it, for the tests in `args` and `options`.
#[cfg(test)]
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    use clap::Parser as _;
    Cli::try_parse_from(std::iter::once("ecr-refresh").chain(args.iter().copied()))
}

#[cfg(test)]
fn sync(args: &[&str]) -> SyncArgs {
    match parse(&[&["sync"], args].concat()).unwrap().command {
        Command::Sync(a) => a,
        other => panic!("{other:?}"),
    }
}
