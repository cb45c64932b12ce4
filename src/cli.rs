//! Command-line flags. Every flag has an `ECR_REFRESH_*` env fallback; values are parsed into
//! types so a bad one fails before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::ClusterOptions;
use crate::ecr::{RegionName, RegistrySpec};
use crate::error::{Error, Result, EXIT_CODES_HELP, SYNC_EXAMPLES};
use crate::namespaces::{validate_dns_subdomain, NamespacePattern, Selection};
use crate::sync::SyncOptions;
use crate::telemetry::LogFormat;

/// Keeps Amazon ECR pull secrets fresh in Kubernetes clusters that run outside AWS.
///
/// ECR docker logins last 12 hours. Run `ecr-refresh sync` hourly (cronjob.yaml does) and every
/// selected namespace keeps a current `kubernetes.io/dockerconfigjson` Secret that its
/// ServiceAccounts use as an imagePullSecret.
#[derive(Debug, Parser)]
#[command(name = "ecr-refresh", version, after_long_help = EXIT_CODES_HELP, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch an ECR token once and write it into every selected namespace, then exit.
    ///
    /// For each namespace: server-side apply the pull Secret (never touching a Secret of the same
    /// name that ecr-refresh does not own, unless --force), then add it to the imagePullSecrets
    /// of the chosen ServiceAccounts, keeping every entry that is already there.
    #[command(after_long_help = const_format::concatcp!(SYNC_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Sync(SyncArgs),
}

/// Flags shared by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file [default: $KUBECONFIG, ~/.kube/config, then in-cluster]
    #[arg(
        help_heading = "Cluster",
        long,
        global = true,
        env = "ECR_REFRESH_KUBECONFIG",
        value_name = "PATH"
    )]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use [default: the current context]
    #[arg(
        help_heading = "Cluster",
        long,
        global = true,
        env = "ECR_REFRESH_CONTEXT",
        value_name = "NAME"
    )]
    pub context: Option<String>,

    /// Timeout for each Kubernetes and AWS request (e.g. 10s, 1m)
    #[arg(help_heading = "Cluster", long, global = true, env = "ECR_REFRESH_REQUEST_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Report format on stdout
    #[arg(help_heading = "Output", short, long, global = true, env = "ECR_REFRESH_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Log format on stderr; the level is set with RUST_LOG (default: info)
    #[arg(help_heading = "Output", long, global = true, env = "ECR_REFRESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A short summary for people
    #[default]
    Text,
    /// One JSON document for scripts and CI (schema in the README)
    Json,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Namespace name or glob to include (*, ?, [a-z], {a,b}); repeatable or comma-separated
    /// [default: all namespaces]. When every value is a plain name, no permission to list
    /// namespaces is needed.
    #[arg(
        help_heading = "Namespaces",
        short = 'n',
        long = "namespace",
        env = "ECR_REFRESH_NAMESPACE",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub namespaces: Vec<NamespacePattern>,

    /// Select every namespace (the default; conflicts with --namespace)
    #[arg(
        help_heading = "Namespaces",
        short = 'A',
        long,
        env = "ECR_REFRESH_ALL_NAMESPACES",
        conflicts_with = "namespaces"
    )]
    pub all_namespaces: bool,

    /// Namespace name or glob to leave alone; wins over --namespace; repeatable or comma-separated
    #[arg(
        help_heading = "Namespaces",
        short = 'x',
        long = "exclude-namespace",
        env = "ECR_REFRESH_EXCLUDE_NAMESPACE",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub exclude_namespaces: Vec<NamespacePattern>,

    /// Name of the pull Secret to write in each namespace
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_SECRET_NAME", default_value = "awsecr-cred", value_name = "NAME", value_parser = parse_secret_name)]
    pub secret_name: String,

    /// ServiceAccount to link the Secret to; repeatable or comma-separated
    #[arg(help_heading = "What to write", long = "service-account", env = "ECR_REFRESH_SERVICE_ACCOUNT", value_delimiter = ',', default_value = "default", value_name = "NAME", value_parser = parse_service_account)]
    pub service_accounts: Vec<String>,

    /// How long to wait for a missing ServiceAccount (a brand-new namespace gets its `default`
    /// one a moment after creation) before failing that namespace
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_SERVICE_ACCOUNT_WAIT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration_or_zero)]
    pub service_account_wait: Duration,

    /// Extra ECR registry: a 12-digit account ID (in the default region) or a full registry
    /// host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com; repeatable or comma-separated.
    /// The caller's own registry in the default region is always included.
    #[arg(
        help_heading = "AWS",
        long = "registry",
        env = "ECR_REFRESH_REGISTRY",
        value_delimiter = ',',
        value_name = "ACCOUNT_OR_HOST"
    )]
    pub registries: Vec<RegistrySpec>,

    /// AWS region [default: AWS_REGION, AWS_DEFAULT_REGION, then the profile's region]
    #[arg(
        help_heading = "AWS",
        long,
        env = "ECR_REFRESH_REGION",
        value_name = "REGION"
    )]
    pub region: Option<RegionName>,

    /// AWS shared-config profile [default: AWS_PROFILE, then `default`]
    #[arg(
        help_heading = "AWS",
        long,
        env = "ECR_REFRESH_PROFILE",
        value_name = "NAME"
    )]
    pub profile: Option<String>,

    /// Take over a Secret of the same name that ecr-refresh does not own, replacing it if it
    /// has another type. Other people's imagePullSecrets entries are never removed.
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_FORCE")]
    pub force: bool,

    /// Send every write as a server-side dry run (dryRun=All): the API server validates and
    /// admits it, and nothing is persisted
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_DRY_RUN")]
    pub dry_run: bool,

    /// How many namespaces to process at once
    #[arg(help_heading = "Run", long, env = "ECR_REFRESH_CONCURRENCY",
        allow_negative_numbers = true, default_value = "16", value_name = "N", value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Upper bound for the whole run; namespaces not done by then are reported as failed.
    /// Keep it below the CronJob's activeDeadlineSeconds.
    #[arg(help_heading = "Run", long, env = "ECR_REFRESH_TIMEOUT", default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl SyncArgs {
    /// Checks what no single flag can check alone, and builds the options.
    pub fn into_options(self, global: &GlobalArgs) -> Result<SyncOptions> {
        // Destructured so a flag that nothing uses fails to compile.
        let Self {
            namespaces,
            all_namespaces: _,
            exclude_namespaces,
            secret_name,
            service_accounts,
            service_account_wait,
            registries,
            region,
            profile,
            force,
            dry_run,
            concurrency,
            timeout,
        } = self;
        if global.request_timeout > timeout {
            return Err(Error::InvalidInput {
                flag: "--request-timeout",
                value: humantime::format_duration(global.request_timeout).to_string(),
                reason: format!(
                    "longer than --timeout {}; make the whole-run timeout the larger one",
                    humantime::format_duration(timeout)
                ),
            });
        }
        if let Some(ctx) = &global.context {
            if ctx.is_empty() {
                return Err(Error::InvalidInput {
                    flag: "--context",
                    value: String::new(),
                    reason: "empty context name".into(),
                });
            }
        }
        let mut service_accounts = service_accounts;
        service_accounts.sort();
        service_accounts.dedup();
        Ok(SyncOptions {
            cluster: ClusterOptions {
                kubeconfig: global.kubeconfig.clone(),
                context: global.context.clone(),
                request_timeout: global.request_timeout,
            },
            region,
            profile,
            registries,
            selection: Selection {
                include: namespaces,
                exclude: exclude_namespaces,
            },
            secret_name,
            service_accounts,
            force,
            dry_run,
            concurrency,
            service_account_wait,
            timeout,
        })
    }
}

fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 30s, 2m or 1h30m"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    const MAX: usize = 1024;
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX as i64).contains(&n) => Ok(n as usize),
        _ => Err(format!("must be a whole number from 1 to {MAX}")),
    }
}

fn parse_secret_name(s: &str) -> Result<String, String> {
    validate_dns_subdomain(s)?;
    Ok(s.to_string())
}

fn parse_service_account(s: &str) -> Result<String, String> {
    validate_dns_subdomain(s)?;
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ecr-refresh").chain(args.iter().copied()))
    }

    fn sync(args: &[&str]) -> SyncArgs {
        match parse(&[&["sync"], args].concat()).unwrap().command {
            Command::Sync(a) => a,
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&["sync"]).unwrap();
        assert_eq!(cli.global.request_timeout, Duration::from_secs(10));
        assert_eq!(cli.global.output, OutputFormat::Text);
        let Command::Sync(a) = cli.command;
        assert_eq!(a.secret_name, "awsecr-cred");
        assert_eq!(a.service_accounts, ["default"]);
        assert_eq!(a.concurrency, 16);
        assert_eq!(a.timeout, Duration::from_secs(300));
        assert!(a.namespaces.is_empty() && !a.dry_run && !a.force);
    }

    #[test]
    fn repeatable_and_comma_separated() {
        let a = sync(&[
            "-n",
            "team-*",
            "-n",
            "a,b",
            "-x",
            "team-b",
            "--service-account",
            "default,builder",
        ]);
        let ns: Vec<_> = a
            .namespaces
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        assert_eq!(ns, ["team-*", "a", "b"]);
        assert_eq!(a.exclude_namespaces.len(), 1);
        assert_eq!(a.service_accounts, ["default", "builder"]);
    }

    #[test]
    fn global_flags_after_the_subcommand() {
        let cli = parse(&[
            "sync",
            "--context",
            "prod",
            "-o",
            "json",
            "--request-timeout",
            "3s",
        ])
        .unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.request_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["sync", "-n", "[abc"][..], "--namespace"),
            (&["sync", "-x", "Bad_Name"][..], "--exclude-namespace"),
            (&["sync", "--secret-name", "Not_Valid"][..], "--secret-name"),
            (&["sync", "--registry", "docker.io"][..], "--registry"),
            (&["sync", "--region", "moon-1"][..], "--region"),
            (&["sync", "--concurrency", "0"][..], "--concurrency"),
            (&["sync", "--concurrency", "-3"][..], "--concurrency"),
            (&["sync", "--timeout", "soon"][..], "--timeout"),
            (
                &["sync", "--request-timeout", "0s"][..],
                "--request-timeout",
            ),
            (&["sync", "-A", "-n", "x"][..], "--all-namespaces"),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let msg = err.to_string();
            assert!(msg.contains(flag), "{args:?}: {msg}");
        }
    }

    #[test]
    fn request_timeout_must_fit_the_run() {
        let cli = parse(&["sync", "--request-timeout", "10m", "--timeout", "1m"]).unwrap();
        let Command::Sync(a) = cli.command;
        let err = a.into_options(&cli.global).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--request-timeout"));
    }
}
