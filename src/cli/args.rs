//! The flags and subcommands as clap sees them, with their help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::help::{EXIT_CODES_HELP, PRUNE_EXAMPLES, STATUS_EXAMPLES, SYNC_EXAMPLES};
pub use super::services::{AwsArgs, PushArgs};
use super::values::{namespace_name, object_name, Concurrency, DurationArg, Timeout};
use crate::k8s_grammar::{LabelSelector, PatternList};

/// The heading of the flags that shape what is written.
const WRITE: &str = "What to write";
/// The heading of the flags for the Events namespace owners see.
const EVENTS: &str = "Events for namespace owners";
/// The heading of the flags for GitOps controllers' credentials.
const GITOPS: &str = "GitOps controllers";
/// How help names a value like `30s` or `1h30m`.
const DURATION: &str = "DURATION";

/// Keeps Amazon ECR pull secrets fresh in Kubernetes clusters that run outside AWS.
///
/// ECR docker logins last 12 hours. Run `ecr-refresh sync` every few minutes (cronjob.yaml runs
/// it every 5) and every selected namespace keeps a current `kubernetes.io/dockerconfigjson`
/// Secret that its ServiceAccounts use as an imagePullSecret.
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
    /// Make every selected namespace hold a current pull Secret, writing only where one is due,
    /// then exit.
    ///
    /// Reads our Secrets and the ServiceAccounts in a few cluster-wide lists, then, only where
    /// something is due (a missing or edited Secret, other registries or credentials, a token
    /// within --refresh-before of expiry), fetches one ECR token and server-side applies the
    /// Secret. A Secret of that name without our label app.kubernetes.io/managed-by=ecr-refresh
    /// is never touched unless --force. Then adds it to the imagePullSecrets of the chosen
    /// ServiceAccounts, keeping every entry that is already there. --refresh-all rewrites
    /// every Secret of ours now.
    #[command(after_long_help = const_format::concatcp!(SYNC_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Sync(SyncArgs),

    /// Report, without changing anything, whether each selected namespace has a current Secret
    /// of ours and whether its ServiceAccounts use it.
    ///
    /// Exits 1 when any namespace is missing the Secret, has someone else's, has an expired
    /// token (or one expiring sooner than --min-remaining), has a ServiceAccount that does not
    /// reference it, or has a pod stuck on a pull without it. Also says whether the born-linked
    /// policy is installed. Needs only `get` rights (and `list` on namespaces for globs; `list`
    /// on pods to see stuck pods).
    #[command(after_long_help = const_format::concatcp!(STATUS_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),

    /// Remove ecr-refresh's Secret and imagePullSecrets entry from namespaces that are no longer
    /// selected (or opted out), to narrow the scope or to uninstall.
    ///
    /// Only Secrets labelled app.kubernetes.io/managed-by=ecr-refresh are deleted, and only an
    /// imagePullSecrets entry that ecr-refresh added (recorded in the ServiceAccount's
    /// ecr-refresh/linked annotation) is taken out; one added by hand stays. Needs `delete` on
    /// the Secret.
    #[command(after_long_help = const_format::concatcp!(PRUNE_EXAMPLES, EXIT_CODES_HELP), after_help = EXIT_CODES_HELP)]
    Prune(PruneArgs),

    /// Set up AWS access without any AWS key: publish the cluster's ServiceAccount issuer for
    /// IAM (web identity), and check that it stays published
    ///
    /// `oidc publish` writes the documents to serve and prints the IAM and apiserver steps;
    /// `oidc check` compares what is served with the live cluster (README "Without any AWS key").
    Oidc(super::oidc::OidcArgs),

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
    pub(crate) page: Option<ManPage>,
}

/// The pages `man` can print besides the main one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManPage {
    Sync,
    Status,
    Prune,
    Oidc,
    Completions,
}

impl ManPage {
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Status => "status",
            Self::Prune => "prune",
            Self::Oidc => "oidc",
            Self::Completions => "completions",
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub(crate) shell: CompletionShell,
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
#[command(next_help_heading = "Cluster")]
pub struct GlobalArgs {
    /// Path to the kubeconfig file [default: $KUBECONFIG, ~/.kube/config, then in-cluster]
    #[arg(long, global = true, env = "ECR_REFRESH_KUBECONFIG", value_name = "PATH")]
    pub(crate) kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use [default: the current context]
    #[arg(long, global = true, env = "ECR_REFRESH_CONTEXT", value_name = "NAME")]
    pub(crate) context: Option<String>,

    /// Timeout for each Kubernetes and AWS request (e.g. 10s, 1m)
    #[arg(
        long,
        global = true,
        env = "ECR_REFRESH_REQUEST_TIMEOUT",
        default_value = "10s",
        value_name = DURATION
    )]
    pub(crate) request_timeout: Timeout,

    /// Report format on stdout
    #[arg(help_heading = "Output", short, long, global = true, env = "ECR_REFRESH_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,

    /// Log format on stderr; the level is set with RUST_LOG (default: info)
    #[arg(help_heading = "Output", long, global = true, env = "ECR_REFRESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`, as [`crate::telemetry::LogFormat`] takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl From<LogFormat> for crate::telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => Self::Text,
            LogFormat::Json => Self::Json,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A short summary for people
    #[default]
    Text,
    /// One JSON document for scripts and CI (schema in the README)
    Json,
    /// The JSON document on one line, "type":"report" first, for log collectors
    #[value(name = "json-line")]
    JsonLine,
}

/// Which namespaces to act on.
#[derive(Debug, Args)]
#[command(next_help_heading = "Namespaces")]
pub struct SelectionArgs {
    /// Namespace name or glob to include (*, ?, [a-z], {a,b}); repeatable or comma-separated
    /// [default: all namespaces]. When every value is a plain name, no permission to list
    /// namespaces is needed.
    #[arg(short = 'n', long = "namespace", env = "ECR_REFRESH_NAMESPACE", value_name = "GLOB")]
    pub(crate) namespaces: Vec<PatternList>,

    /// Select every namespace (the default; conflicts with --namespace)
    #[arg(short = 'A', long, env = "ECR_REFRESH_ALL_NAMESPACES", conflicts_with = "namespaces")]
    pub(crate) all_namespaces: bool,

    /// Namespace name or glob to leave alone; wins over --namespace; repeatable or comma-separated
    #[arg(
        short = 'x',
        long = "exclude-namespace",
        env = "ECR_REFRESH_EXCLUDE_NAMESPACE",
        value_name = "GLOB"
    )]
    pub(crate) exclude_namespaces: Vec<PatternList>,

    /// Only namespaces whose labels match this selector (e.g. `env=prod,team in (a,b)`);
    /// combines with the globs. Namespaces annotated `ecr-refresh/opt-out: "true"` are always
    /// left out.
    #[arg(short = 'l', long, env = "ECR_REFRESH_NAMESPACE_SELECTOR", value_name = "SELECTOR")]
    pub(crate) namespace_selector: Option<LabelSelector>,

    /// A YAML file of tenant rules: each namespace's token is asked as its own tenant's IAM role,
    /// so it pulls only that team's images. The first rule that takes a namespace wins; one no
    /// rule takes is left alone (and pruned with --prune). The flags above still narrow the run.
    /// See README "Multi-tenant clusters"
    #[arg(long, env = "ECR_REFRESH_TENANTS", value_name = "FILE")]
    pub(crate) tenants: Option<PathBuf>,
}

/// Which Secret, and which ServiceAccounts use it.
#[derive(Debug, Args)]
#[command(next_help_heading = WRITE)]
pub struct TargetArgs {
    /// Name of the pull Secret in each namespace
    #[arg(
                long,
        env = "ECR_REFRESH_SECRET_NAME",
        default_value = "awsecr-cred",
        value_name = "NAME",
        value_parser = object_name
    )]
    pub(crate) secret_name: String,

    /// ServiceAccount that uses the Secret; repeatable or comma-separated
    #[arg(
                long = "service-account",
        env = "ECR_REFRESH_SERVICE_ACCOUNT",
        value_delimiter = ',',
        default_value = "default",
        value_name = "NAME",
        value_parser = object_name
    )]
    pub(crate) service_accounts: Vec<String>,

    /// Every ServiceAccount in each namespace, for teams that run pods under their own.
    /// Needs `list` on serviceaccounts and `get`/`update` on all of them (see README)
    #[arg(long, env = "ECR_REFRESH_ALL_SERVICE_ACCOUNTS", conflicts_with = "service_accounts")]
    pub(crate) all_service_accounts: bool,
}

/// How hard and how long to work.
#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct RunArgs {
    /// How many namespaces to process at once
    #[arg(
        long,
        env = "ECR_REFRESH_CONCURRENCY",
        allow_negative_numbers = true,
        default_value = "16",
        value_name = "N"
    )]
    pub(crate) concurrency: Concurrency,

    /// Upper bound for the whole run; namespaces not done by then are reported as failed.
    /// Keep it below the CronJob's activeDeadlineSeconds
    #[arg(long, env = "ECR_REFRESH_TIMEOUT", default_value = "5m", value_name = DURATION)]
    pub(crate) timeout: Timeout,
}

/// Which namespaces, and which Secret and ServiceAccounts in each.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    #[command(flatten)]
    pub(crate) selection: SelectionArgs,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Where `sync` records what it wrote, and `status` checks it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Run")]
pub struct LedgerArgs {
    /// Namespace of the ConfigMap ecr-refresh-state, where sync records the resourceVersion
    /// of each Secret it wrote, so a Secret changed since (whatever its managedFields claim)
    /// is read in full and rewritten. Keep it one tenants cannot write
    #[arg(
        long,
        env = "ECR_REFRESH_STATE_NAMESPACE",
        default_value = "kube-system",
        value_name = "NAMESPACE",
        value_parser = object_name
    )]
    pub(crate) state_namespace: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub(crate) scope: ScopeArgs,
    #[command(flatten)]
    pub(crate) aws: AwsArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) ledger: LedgerArgs,

    /// How long to wait for a missing ServiceAccount (a brand-new namespace gets its `default`
    /// one a moment after creation) before failing that namespace
    #[arg(
        help_heading = WRITE,
        long,
        env = "ECR_REFRESH_SERVICE_ACCOUNT_WAIT",
        default_value = "10s",
        value_name = DURATION
    )]
    pub(crate) service_account_wait: DurationArg,

    /// Take over a Secret of the same name that ecr-refresh does not own, replacing it if it
    /// has another type (that needs `delete` on it). Other people's imagePullSecrets entries
    /// are never removed
    #[arg(help_heading = WRITE, long, env = "ECR_REFRESH_FORCE")]
    pub(crate) force: bool,

    /// Send every write as a server-side dry run (dryRun=All): the API server validates and
    /// admits it, and nothing is persisted
    #[arg(help_heading = WRITE, long, env = "ECR_REFRESH_DRY_RUN")]
    pub(crate) dry_run: bool,

    /// Write only where something is due: a Secret that is missing, not current (edited by
    /// someone else, made for other registries or credentials) or whose token has this little
    /// left. The default rewrites a 12h token when less than 9h remain, so a stopped CronJob
    /// leaves at least 8h before any pull fails, and tokens are written about every 3h
    #[arg(
        help_heading = WRITE,
        long,
        env = "ECR_REFRESH_REFRESH_BEFORE",
        default_value = "9h",
        value_name = DURATION
    )]
    pub(crate) refresh_before: DurationArg,

    /// Fetch a new token and rewrite every Secret of ours now, due or not (e.g. after revoking
    /// a token)
    #[arg(help_heading = WRITE, long, env = "ECR_REFRESH_REFRESH_ALL")]
    pub(crate) refresh_all: bool,

    /// Also remove our Secret and imagePullSecrets entry from namespaces that are no longer
    /// selected (see `ecr-refresh prune`)
    #[arg(help_heading = WRITE, long, env = "ECR_REFRESH_PRUNE")]
    pub(crate) prune: bool,

    /// Then delete each pod that waits in ErrImagePull/ImagePullBackOff because it was created
    /// before its ServiceAccount listed the Secret, when its ReplicaSet, StatefulSet or DaemonSet
    /// will recreate it with the Secret (never a bare pod, a Job's pod, or one with
    /// imagePullSecrets of its own). Needs `list` and `delete` on pods
    /// (deploy/stuck-pods-rbac.yaml)
    #[arg(help_heading = WRITE, long, env = "ECR_REFRESH_DELETE_STUCK_PODS")]
    pub(crate) delete_stuck_pods: bool,

    #[command(flatten)]
    pub(crate) events: EventArgs,

    #[command(flatten)]
    pub(crate) argocd: ArgoCdArgs,

    #[command(flatten)]
    // Boxed: the URL is large, and clippy keeps the Command variants close in size.
    pub(crate) metrics: Box<PushArgs>,
}

/// Argo CD's repository credentials (`sync`, `status`, `prune`).
#[derive(Debug, Args)]
pub struct ArgoCdArgs {
    /// Argo CD's namespace: also keep there one repository-credentials Secret per ECR registry
    /// host (label argocd.argoproj.io/secret-type=repo-creds, type helm, enableOCI, username AWS,
    /// the token as password), named ecr-refresh.<host>, so Argo CD pulls Helm charts and OCI
    /// artifacts from ECR. Written when due like the pull Secrets; one of that name that is not
    /// ours is never touched. `status` checks them; `prune` removes ours (those the ledger in
    /// --state-namespace records). Needs get, create and patch on those names there
    /// (deploy/argocd). Flux needs no flag: select its namespace and point secretRef at the
    /// pull Secret
    #[arg(
        help_heading = GITOPS,
        long,
        env = "ECR_REFRESH_ARGOCD_NAMESPACE",
        value_name = "NAMESPACE",
        value_parser = namespace_name
    )]
    pub(crate) argocd_namespace: Option<String>,
}

/// Events for namespace owners (`sync`, `prune`).
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Write no Events. By default a pass writes Kubernetes Events (events.k8s.io/v1) that
    /// namespace owners see in `kubectl describe`: on our Secret when its name is taken or it
    /// could not be refreshed, on a ServiceAccount whose link failed, on a pod stuck on a pull,
    /// when prune removed the Secret, and a Normal one when the Secret is created or a Warning
    /// clears. Needs create, patch and list on events.k8s.io events (rbac.yaml)
    #[arg(help_heading = EVENTS, long, env = "ECR_REFRESH_NO_EVENTS")]
    pub(crate) no_events: bool,

    /// Write an Event for a condition that persists at most this often (as a count on the same
    /// Event's series), so a 5-minute CronJob does not repeat itself every pass
    #[arg(
        help_heading = EVENTS,
        long,
        env = "ECR_REFRESH_EVENT_REPEAT",
        default_value = "1h",
        value_name = DURATION
    )]
    pub(crate) event_repeat: DurationArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub(crate) scope: ScopeArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) ledger: LedgerArgs,

    // Unset: only expired tokens are unhealthy.
    /// Also count a namespace as unhealthy when its token expires sooner than this
    #[arg(help_heading = "Status", long, env = "ECR_REFRESH_MIN_REMAINING", value_name = DURATION)]
    pub(crate) min_remaining: Option<DurationArg>,

    #[command(flatten)]
    pub(crate) argocd: ArgoCdArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub(crate) scope: ScopeArgs,
    #[command(flatten)]
    pub(crate) run: RunArgs,

    /// Remove ecr-refresh's Secret from every namespace, and every imagePullSecrets entry naming
    /// it, also those ecr-refresh did not add (uninstall)
    #[arg(
        help_heading = "Prune",
        long,
        env = "ECR_REFRESH_UNINSTALL",
        conflicts_with_all = ["namespaces", "exclude_namespaces", "namespace_selector", "all_namespaces", "tenants"]
    )]
    pub(crate) uninstall: bool,

    /// Send every write as a server-side dry run: report what would be removed, remove nothing
    #[arg(help_heading = "Prune", long, env = "ECR_REFRESH_DRY_RUN")]
    pub(crate) dry_run: bool,

    #[command(flatten)]
    pub(crate) events: EventArgs,

    #[command(flatten)]
    pub(crate) argocd: ArgoCdArgs,

    #[command(flatten)]
    pub(crate) ledger: LedgerArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::values::MAX_DURATION;
    use crate::cli::{parse, sync};
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = parse(&["sync"]).unwrap();
        assert_eq!(cli.global.request_timeout.get(), Duration::from_secs(10));
        assert_eq!(cli.global.output, OutputFormat::Text);
        let a = sync(&[]);
        assert_eq!(a.scope.target.secret_name, "awsecr-cred");
        assert_eq!(a.scope.target.service_accounts, ["default"]);
        assert_eq!(a.run.concurrency.get(), 16);
        assert_eq!(a.run.timeout.get(), Duration::from_secs(300));
        assert!(a.scope.selection.namespaces.is_empty() && !a.dry_run && !a.force && !a.prune);
        assert_eq!(a.refresh_before.get(), Duration::from_secs(9 * 3600));
        assert!(!a.refresh_all);
        assert_eq!(String::from(a.aws.role_session_name), "ecr-refresh");
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
        assert_eq!(a.run.timeout.get(), MAX_DURATION);
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
        assert_eq!(cli.global.request_timeout.get(), Duration::from_secs(3));
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
}
