//! Command-line flags. Every flag has an `ECR_REFRESH_*` env fallback; values are parsed into
//! types so a bad one fails before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::ClusterOptions;
use crate::cmd::prune::PruneOptions;
use crate::cmd::status::StatusOptions;
use crate::cmd::sync::SyncOptions;
use crate::cmd::{ServiceAccounts, Target};
use crate::ecr::{AwsOptions, RegionName, RegistrySpec};
use crate::error::{
    Error, Result, EXIT_CODES_HELP, PRUNE_EXAMPLES, STATUS_EXAMPLES, SYNC_EXAMPLES,
};
use crate::k8s_grammar::{validate_dns_subdomain, LabelSelector, PatternList};
use crate::namespaces::Selection;
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

    /// Report, without changing anything, whether each selected namespace has a current Secret
    /// of ours and whether its ServiceAccounts use it.
    ///
    /// Exits 1 when any namespace is missing the Secret, has someone else's, has an expired
    /// token (or one expiring sooner than --min-remaining), or has a ServiceAccount that does
    /// not reference it. Needs only `get` rights (and `list` on namespaces for globs).
    #[command(after_long_help = const_format::concatcp!(STATUS_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),

    /// Remove ecr-refresh's Secret and imagePullSecrets entry from namespaces that are no longer
    /// selected (or opted out), to narrow the scope or to uninstall.
    ///
    /// Only Secrets labelled app.kubernetes.io/managed-by=ecr-refresh are deleted, and only our
    /// entry is taken out of a ServiceAccount's imagePullSecrets. Needs `delete` on the Secret.
    #[command(after_long_help = const_format::concatcp!(PRUNE_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Prune(PruneArgs),

    /// Print a shell completion script for bash, zsh, fish or powershell
    ///
    /// bash: `ecr-refresh completions bash > /etc/bash_completion.d/ecr-refresh`, or
    /// `source <(ecr-refresh completions bash)` in ~/.bashrc. zsh: save it as `_ecr-refresh` in
    /// a folder on $fpath. fish: save it as ~/.config/fish/completions/ecr-refresh.fish.
    /// PowerShell: add `ecr-refresh completions powershell | Out-String | Invoke-Expression` to
    /// $PROFILE.
    Completions(CompletionsArgs),

    /// Print the man page (roff)
    ///
    /// `ecr-refresh man | man -l -` reads it; `ecr-refresh man sync` prints ecr-refresh-sync(1).
    /// To install: `ecr-refresh man > /usr/local/share/man/man1/ecr-refresh.1`, and likewise
    /// `ecr-refresh-sync.1` and the others.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print [default: the main page, ecr-refresh(1)]
    #[arg(value_enum)]
    pub page: Option<ManPage>,
}

/// The pages `man` can print besides the main one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManPage {
    Sync,
    Status,
    Prune,
    Completions,
}

impl ManPage {
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Status => "status",
            Self::Prune => "prune",
            Self::Completions => "completions",
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `completions` supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    #[value(name = "powershell")]
    PowerShell,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(s: CompletionShell) -> Self {
        match s {
            CompletionShell::Bash => Self::Bash,
            CompletionShell::Zsh => Self::Zsh,
            CompletionShell::Fish => Self::Fish,
            CompletionShell::PowerShell => Self::PowerShell,
        }
    }
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

/// Which namespaces to act on.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Namespace name or glob to include (*, ?, [a-z], {a,b}); repeatable or comma-separated
    /// [default: all namespaces]. When every value is a plain name, no permission to list
    /// namespaces is needed.
    #[arg(
        help_heading = "Namespaces",
        short = 'n',
        long = "namespace",
        env = "ECR_REFRESH_NAMESPACE",
        value_name = "GLOB"
    )]
    pub namespaces: Vec<PatternList>,

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
        value_name = "GLOB"
    )]
    pub exclude_namespaces: Vec<PatternList>,

    /// Only namespaces whose labels match this selector (e.g. `env=prod,team in (a,b)`);
    /// combines with the globs. Namespaces annotated `ecr-refresh/opt-out: "true"` are always
    /// left out.
    #[arg(
        help_heading = "Namespaces",
        short = 'l',
        long,
        env = "ECR_REFRESH_NAMESPACE_SELECTOR",
        value_name = "SELECTOR"
    )]
    pub namespace_selector: Option<LabelSelector>,
}

impl SelectionArgs {
    fn into_selection(self) -> Selection {
        let Self {
            namespaces,
            all_namespaces: _,
            exclude_namespaces,
            namespace_selector,
        } = self;
        Selection {
            include: PatternList::flatten(namespaces),
            exclude: PatternList::flatten(exclude_namespaces),
            label_selector: namespace_selector,
        }
    }
}

/// Which Secret, and which ServiceAccounts use it.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Name of the pull Secret in each namespace
    #[arg(
        help_heading = "What to write",
        long,
        env = "ECR_REFRESH_SECRET_NAME",
        default_value = "awsecr-cred",
        value_name = "NAME",
        value_parser = parse_name
    )]
    pub secret_name: String,

    /// ServiceAccount that uses the Secret; repeatable or comma-separated
    #[arg(
        help_heading = "What to write",
        long = "service-account",
        env = "ECR_REFRESH_SERVICE_ACCOUNT",
        value_delimiter = ',',
        default_value = "default",
        value_name = "NAME",
        value_parser = parse_name
    )]
    pub service_accounts: Vec<String>,

    /// Every ServiceAccount in each namespace, for teams that run pods under their own.
    /// Needs `list` on serviceaccounts and `get`/`update` on all of them (see README)
    #[arg(
        help_heading = "What to write",
        long,
        env = "ECR_REFRESH_ALL_SERVICE_ACCOUNTS",
        conflicts_with = "service_accounts"
    )]
    pub all_service_accounts: bool,
}

impl TargetArgs {
    fn into_target(self) -> Target {
        let Self {
            secret_name,
            mut service_accounts,
            all_service_accounts,
        } = self;
        service_accounts.sort();
        service_accounts.dedup();
        Target {
            secret_name,
            service_accounts: if all_service_accounts {
                ServiceAccounts::All
            } else {
                ServiceAccounts::Named(service_accounts)
            },
        }
    }
}

/// Where and as whom to ask ECR.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// Extra ECR registry: a 12-digit account ID (in the default region) or a full registry
    /// host such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com (any region); repeatable or
    /// comma-separated. The caller's own registry in the default region is always included;
    /// one token is fetched per region.
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

    /// IAM role to assume (through STS) with the credentials the chain finds: the
    /// cross-account pattern
    #[arg(
        help_heading = "AWS",
        long,
        env = "ECR_REFRESH_ROLE_ARN",
        value_name = "ARN",
        value_parser = parse_role_arn
    )]
    pub role_arn: Option<String>,

    /// Session name for --role-arn, shown in CloudTrail
    #[arg(
        help_heading = "AWS",
        long,
        env = "ECR_REFRESH_ROLE_SESSION_NAME",
        default_value = "ecr-refresh",
        value_name = "NAME",
        requires = "role_arn",
        value_parser = parse_session_name
    )]
    pub role_session_name: String,

    /// External ID the role's trust policy requires
    #[arg(
        help_heading = "AWS",
        long,
        env = "ECR_REFRESH_EXTERNAL_ID",
        value_name = "ID",
        requires = "role_arn"
    )]
    pub external_id: Option<String>,
}

impl AwsArgs {
    fn into_options(self) -> AwsOptions {
        let Self {
            registries,
            region,
            profile,
            role_arn,
            role_session_name,
            external_id,
        } = self;
        AwsOptions {
            region,
            profile,
            registries,
            role_arn,
            role_session_name,
            external_id,
        }
    }
}

/// How hard and how long to work.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many namespaces to process at once
    #[arg(
        help_heading = "Run",
        long,
        env = "ECR_REFRESH_CONCURRENCY",
        allow_negative_numbers = true,
        default_value = "16",
        value_name = "N",
        value_parser = parse_concurrency
    )]
    pub concurrency: usize,

    /// Upper bound for the whole run; namespaces not done by then are reported as failed.
    /// Keep it below the CronJob's activeDeadlineSeconds
    #[arg(
        help_heading = "Run",
        long,
        env = "ECR_REFRESH_TIMEOUT",
        default_value = "5m",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub timeout: Duration,
}

impl RunArgs {
    fn check(&self, global: &GlobalArgs) -> Result<()> {
        if global.request_timeout > self.timeout {
            return Err(Error::InvalidInput {
                flag: "--request-timeout",
                value: humantime::format_duration(global.request_timeout).to_string(),
                reason: format!(
                    "longer than --timeout {}; make the whole-run timeout the larger one",
                    humantime::format_duration(self.timeout)
                ),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub run: RunArgs,

    /// How long to wait for a missing ServiceAccount (a brand-new namespace gets its `default`
    /// one a moment after creation) before failing that namespace
    #[arg(
        help_heading = "What to write",
        long,
        env = "ECR_REFRESH_SERVICE_ACCOUNT_WAIT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_duration_or_zero
    )]
    pub service_account_wait: Duration,

    /// Take over a Secret of the same name that ecr-refresh does not own, replacing it if it
    /// has another type (that needs `delete` on it). Other people's imagePullSecrets entries
    /// are never removed
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_FORCE")]
    pub force: bool,

    /// Send every write as a server-side dry run (dryRun=All): the API server validates and
    /// admits it, and nothing is persisted
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_DRY_RUN")]
    pub dry_run: bool,

    /// Leave a Secret alone while its token has more than this left (and it was made for the
    /// same registries); without it every run writes a new token. With e.g. `--refresh-before
    /// 6h` the CronJob can run every few minutes, so new namespaces get credentials quickly,
    /// while tokens are rewritten about twice a day
    #[arg(
        help_heading = "What to write",
        long,
        env = "ECR_REFRESH_REFRESH_BEFORE",
        value_name = "DURATION",
        value_parser = parse_duration_or_zero
    )]
    pub refresh_before: Option<Duration>,

    /// Also remove our Secret and imagePullSecrets entry from namespaces that are no longer
    /// selected (see `ecr-refresh prune`)
    #[arg(help_heading = "What to write", long, env = "ECR_REFRESH_PRUNE")]
    pub prune: bool,

    #[command(flatten)]
    // Boxed: the URL is large, and clippy keeps the Command variants close in size.
    pub metrics: Box<crate::metrics::PushArgs>,
}

impl SyncArgs {
    /// Checks what no single flag can check alone, and builds the options.
    pub fn into_options(self, global: &GlobalArgs) -> Result<SyncOptions> {
        // Destructured so a flag that nothing uses fails to compile.
        let Self {
            selection,
            target,
            aws,
            run,
            service_account_wait,
            force,
            dry_run,
            refresh_before,
            prune,
            // Pushed by `crate::run` once the report is done, whatever the outcome.
            metrics: _,
        } = self;
        run.check(global)?;
        if let Some(refresh) = refresh_before {
            // ECR tokens last 12 hours: a larger window would refresh on every run.
            if refresh >= Duration::from_secs(12 * 3600) {
                return Err(Error::InvalidInput {
                    flag: "--refresh-before",
                    value: humantime::format_duration(refresh).to_string(),
                    reason: "ECR tokens last 12h, so this would rewrite every Secret on every run; use less than 12h (e.g. 6h)".into(),
                });
            }
        }
        Ok(SyncOptions {
            cluster: cluster_options(global),
            aws: aws.into_options(),
            selection: selection.into_selection(),
            target: target.into_target(),
            force,
            dry_run,
            concurrency: run.concurrency,
            service_account_wait,
            timeout: run.timeout,
            refresh_before,
            prune,
        })
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub run: RunArgs,

    /// Also count a namespace as unhealthy when its token expires sooner than this
    #[arg(
        help_heading = "Status",
        long,
        env = "ECR_REFRESH_MIN_REMAINING",
        value_name = "DURATION",
        value_parser = parse_duration_or_zero
    )]
    pub min_remaining: Option<Duration>,
}

impl StatusArgs {
    pub fn into_options(self, global: &GlobalArgs) -> Result<StatusOptions> {
        let Self {
            selection,
            target,
            run,
            min_remaining,
        } = self;
        run.check(global)?;
        Ok(StatusOptions {
            cluster: cluster_options(global),
            selection: selection.into_selection(),
            target: target.into_target(),
            concurrency: run.concurrency,
            timeout: run.timeout,
            min_remaining: min_remaining.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub run: RunArgs,

    /// Remove ecr-refresh's Secret and imagePullSecrets entry from every namespace (uninstall)
    #[arg(
        help_heading = "Prune",
        long,
        env = "ECR_REFRESH_UNINSTALL",
        conflicts_with_all = ["namespaces", "exclude_namespaces", "namespace_selector", "all_namespaces"]
    )]
    pub uninstall: bool,

    /// Send every write as a server-side dry run: report what would be removed, remove nothing
    #[arg(help_heading = "Prune", long, env = "ECR_REFRESH_DRY_RUN")]
    pub dry_run: bool,
}

impl PruneArgs {
    pub fn into_options(self, global: &GlobalArgs) -> Result<PruneOptions> {
        let Self {
            selection,
            target,
            run,
            uninstall,
            dry_run,
        } = self;
        run.check(global)?;
        let mut selection = selection.into_selection();
        if uninstall {
            // Keep nothing: every namespace is "no longer selected".
            selection.exclude.push("*".parse().expect("valid glob"));
        }
        Ok(PruneOptions {
            cluster: cluster_options(global),
            selection,
            target: target.into_target(),
            dry_run,
            uninstall,
            concurrency: run.concurrency,
            timeout: run.timeout,
        })
    }
}

fn cluster_options(global: &GlobalArgs) -> ClusterOptions {
    ClusterOptions {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
        request_timeout: global.request_timeout,
    }
}

/// The longest duration any flag takes. A CronJob pass never needs more, and a bound keeps
/// deadline arithmetic (`now + timeout`, `timeout * 4`) far from overflow. Messages say "24h".
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 30s, 2m or 1h30m"))?;
    if d > MAX_DURATION {
        return Err("must be at most 24h".into());
    }
    Ok(d)
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

fn parse_name(s: &str) -> Result<String, String> {
    validate_dns_subdomain(s)?;
    Ok(s.to_string())
}

fn parse_role_arn(s: &str) -> Result<String, String> {
    // arn:<partition>:iam::<12 digits>:role/<path/name>
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-pull".into())
    }
}

fn parse_session_name(s: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=,.@-_".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err("use 2 to 64 letters, digits or =,.@-_".into())
    }
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
            other => panic!("{other:?}"),
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
        let a = sync(&[]);
        assert_eq!(a.target.secret_name, "awsecr-cred");
        assert_eq!(a.target.service_accounts, ["default"]);
        assert_eq!(a.run.concurrency, 16);
        assert_eq!(a.run.timeout, Duration::from_secs(300));
        assert!(a.selection.namespaces.is_empty() && !a.dry_run && !a.force && !a.prune);
        assert_eq!(a.refresh_before, None);
        assert_eq!(a.aws.role_session_name, "ecr-refresh");
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
        let sel = a.selection.into_selection();
        let ns: Vec<_> = sel.include.iter().map(|p| p.as_str()).collect();
        assert_eq!(ns, ["team-*", "a", "b"]);
        assert_eq!(sel.exclude.len(), 1);
        assert_eq!(a.target.service_accounts, ["default", "builder"]);
    }

    #[test]
    fn commas_inside_braces_and_brackets_belong_to_the_glob() {
        let a = sync(&["-n", "{a,b}-*,x-[a,b]", "-x", "{c,d}"]);
        let sel = a.selection.into_selection();
        let ns: Vec<_> = sel.include.iter().map(|p| p.as_str()).collect();
        assert_eq!(ns, ["{a,b}-*", "x-[a,b]"]);
        assert!(sel.matches("b-1") && sel.matches("x-a") && !sel.matches("x-c"));
        assert!(!sel.matches("c") && !sel.matches("d") && !sel.matches("c-1"));
    }

    #[test]
    fn huge_durations_are_bad_input() {
        for (args, flag) in [
            (&["sync", "--timeout", "500000000000y"][..], "--timeout"),
            (&["status", "--timeout", "25h"][..], "--timeout"),
            (&["prune", "--timeout", "500000000000y"][..], "--timeout"),
            (
                &["sync", "--request-timeout", "200000000000y"][..],
                "--request-timeout",
            ),
            (
                &["sync", "--service-account-wait", "500000000000y"][..],
                "--service-account-wait",
            ),
            (
                &["sync", "--refresh-before", "500000000000y"][..],
                "--refresh-before",
            ),
            (
                &["status", "--min-remaining", "500000000000y"][..],
                "--min-remaining",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(flag) && msg.contains("at most 24h"),
                "{args:?}: {msg}"
            );
        }
        let a = sync(&["--timeout", "24h", "--service-account-wait", "24h"]);
        assert_eq!(a.run.timeout, MAX_DURATION);
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
            (&["sync", "-l", "env in prod"][..], "--namespace-selector"),
            (&["sync", "--role-arn", "role/x"][..], "--role-arn"),
            (&["sync", "--external-id", "x"][..], "--role-arn"),
            (
                &["sync", "--all-service-accounts", "--service-account", "x"][..],
                "--service-account",
            ),
            (
                &["status", "--min-remaining", "soon"][..],
                "--min-remaining",
            ),
            (&["prune", "--uninstall", "-n", "a"][..], "--uninstall"),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let msg = err.to_string();
            assert!(msg.contains(flag), "{args:?}: {msg}");
        }
    }

    #[test]
    fn cross_flag_checks() {
        let cli = parse(&["sync", "--request-timeout", "10m", "--timeout", "1m"]).unwrap();
        let Command::Sync(a) = cli.command else {
            unreachable!()
        };
        let err = a.into_options(&cli.global).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--request-timeout"));

        let cli = parse(&["sync", "--refresh-before", "12h"]).unwrap();
        let Command::Sync(a) = cli.command else {
            unreachable!()
        };
        assert!(a
            .into_options(&cli.global)
            .unwrap_err()
            .to_string()
            .contains("--refresh-before"));
    }

    #[test]
    fn uninstall_selects_nothing_to_keep() {
        let cli = parse(&["prune", "--uninstall"]).unwrap();
        let Command::Prune(a) = cli.command else {
            unreachable!()
        };
        let opts = a.into_options(&cli.global).unwrap();
        assert!(!opts.selection.matches("default"));
        assert!(!opts.selection.matches("anything"));
    }
}
