//! `oidc publish` and `oidc check`: flags, help text, and their options.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::GlobalArgs;
use super::values::object_name;
use crate::cmd::oidc::{OidcOptions, PublishOptions};
use crate::oidc::iam::RoleSpec;
use crate::oidc::IssuerUrl;

pub(super) const OIDC_EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (check: the published documents match the cluster)
  1  check: the published documents differ from the cluster (drift), or cannot be fetched
  2  invalid input (a flag, env variable, kubeconfig or context; an --issuer-url IAM would
     refuse), or --out-dir cannot be written; nothing was written
  4  could not reach or authenticate to the cluster, or it does not serve its issuer's
     discovery documents; nothing was written";

#[derive(Debug, Args)]
pub struct OidcArgs {
    #[command(subcommand)]
    pub(crate) command: OidcCommand,
}

#[derive(Debug, Subcommand)]
pub enum OidcCommand {
    /// Write the cluster's live issuer documents rewritten for a public HTTPS URL, and the IAM
    /// role's trust policy, then print the steps with every value filled in
    ///
    /// Reads /.well-known/openid-configuration and /openid/v1/jwks from the apiserver (so the
    /// keys are exactly those it signs with), sets `issuer` and `jwks_uri` to --issuer-url, and
    /// writes OUT_DIR/public/ laid out for upload (the paths under the URL that IAM fetches) and
    /// OUT_DIR/trust-policy.json. Prints the IAM commands, and the apiserver flag change when
    /// the cluster's issuer is another one. Writes nothing outside --out-dir, and nothing when
    /// the cluster cannot be read. Run it again after a signing-key rotation.
    #[command(after_long_help = const_format::concatcp!(PUBLISH_EXAMPLES, OIDC_EXIT_CODES_HELP), after_help = OIDC_EXIT_CODES_HELP)]
    Publish(OidcPublishArgs),

    /// Fetch the documents published at --issuer-url over HTTPS and compare them with the live
    /// cluster: exit 1 and name the drift when the issuer differs or a signing key is missing
    ///
    /// Run it on a schedule (e.g. next to the CronJob, or in CI) and alert on a non-zero exit: a
    /// signing-key rotation that was not republished makes every AssumeRoleWithWebIdentity fail.
    /// The certificate is checked against the system's CAs (SSL_CERT_FILE adds one).
    #[command(after_long_help = const_format::concatcp!(CHECK_EXAMPLES, OIDC_EXIT_CODES_HELP), after_help = OIDC_EXIT_CODES_HELP)]
    Check(OidcCheckArgs),
}

const PUBLISH_EXAMPLES: &str = "\
Examples:
  ecr-refresh oidc publish --issuer-url https://oidc.example.com/prod --account-id 123456789012

";

const CHECK_EXAMPLES: &str = "\
Examples:
  ecr-refresh oidc check --issuer-url https://oidc.example.com/prod -o json

";

#[derive(Debug, Args)]
#[command(next_help_heading = "Issuer")]
pub struct IssuerArgs {
    /// The public issuer URL, as IAM registers it and tokens' iss will spell it: https, no port,
    /// no query or fragment, no trailing slash (e.g. https://oidc.example.com/prod)
    #[arg(long, env = "ECR_REFRESH_OIDC_ISSUER_URL", value_name = "URL")]
    pub(crate) issuer_url: IssuerUrl,
}

#[derive(Debug, Args)]
pub struct OidcPublishArgs {
    #[command(flatten)]
    pub(crate) issuer: IssuerArgs,

    /// Where to write public/ (to upload) and trust-policy.json; created if missing
    #[arg(
        help_heading = "Issuer",
        long,
        env = "ECR_REFRESH_OIDC_OUT_DIR",
        default_value = "ecr-refresh-oidc",
        value_name = "DIR"
    )]
    pub(crate) out_dir: PathBuf,

    /// The AWS account that registers the identity provider and owns the role
    #[arg(help_heading = "IAM", long, env = "ECR_REFRESH_OIDC_ACCOUNT_ID", value_name = "ID", value_parser = account_id)]
    pub(crate) account_id: String,

    /// The IAM role the CronJob assumes
    #[arg(
        help_heading = "IAM",
        long,
        env = "ECR_REFRESH_OIDC_ROLE_NAME",
        default_value = "ecr-refresh",
        value_name = "NAME",
        value_parser = role_name
    )]
    pub(crate) role_name: String,

    /// The ServiceAccount whose tokens the role trusts, as NAMESPACE/NAME (the CronJob's)
    #[arg(
        help_heading = "IAM",
        long,
        env = "ECR_REFRESH_OIDC_SERVICE_ACCOUNT",
        default_value = "kube-system/ecr-refresh",
        value_name = "NAMESPACE/NAME",
        value_parser = service_account
    )]
    pub(crate) service_account: (String, String),
}

#[derive(Debug, Args)]
pub struct OidcCheckArgs {
    #[command(flatten)]
    pub(crate) issuer: IssuerArgs,
}

/// A 12-digit AWS account id.
fn account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.into())
    } else {
        Err("an AWS account id is 12 digits, e.g. 123456789012".into())
    }
}

/// IAM's rule for role names.
fn role_name(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(s.into())
    } else {
        Err("an IAM role name is 1-64 letters, digits and +=,.@_-".into())
    }
}

fn service_account(s: &str) -> Result<(String, String), String> {
    let (ns, name) = s
        .split_once('/')
        .ok_or("must be NAMESPACE/NAME, e.g. kube-system/ecr-refresh")?;
    Ok((object_name(ns)?, object_name(name)?))
}

/// What `oidc` runs.
pub(crate) enum OidcJob {
    Publish(PublishOptions),
    Check(OidcOptions),
}

impl OidcArgs {
    pub(crate) fn into_job(self, global: &GlobalArgs) -> OidcJob {
        let Self { command } = self;
        let common = |issuer: IssuerArgs| OidcOptions {
            cluster: global.cluster(),
            issuer: issuer.issuer_url,
        };
        match command {
            OidcCommand::Publish(OidcPublishArgs {
                issuer,
                out_dir,
                account_id,
                role_name,
                service_account: (namespace, service_account),
            }) => OidcJob::Publish(PublishOptions {
                common: common(issuer),
                out_dir,
                role: RoleSpec {
                    account_id,
                    role_name,
                    namespace,
                    service_account,
                },
            }),
            OidcCommand::Check(OidcCheckArgs { issuer }) => OidcJob::Check(common(issuer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};

    fn job(args: &[&str]) -> OidcJob {
        let cli = parse(&[&["oidc"], args].concat()).unwrap();
        match cli.command {
            Command::Oidc(a) => a.into_job(&cli.global),
            other => panic!("{other:?}"),
        }
    }

    /// Every flag of `oidc publish` and `oidc check` (global ones included) has an
    /// ECR_REFRESH_* variable.
    #[test]
    fn every_flag_has_an_env_fallback() {
        use clap::CommandFactory as _;
        let cli = crate::cli::Cli::command();
        let oidc = cli.find_subcommand("oidc").unwrap();
        let globals: Vec<_> = cli.get_arguments().collect();
        for sub in ["publish", "check"] {
            let cmd = oidc.find_subcommand(sub).unwrap();
            for arg in cmd.get_arguments().chain(globals.iter().copied()) {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{sub} --{id}: no env"));
                assert!(
                    env.to_string_lossy().starts_with("ECR_REFRESH_"),
                    "{sub} --{id}"
                );
            }
        }
    }

    #[test]
    fn publish_defaults() {
        let OidcJob::Publish(p) = job(&[
            "publish",
            "--issuer-url",
            "https://o.example.com/c",
            "--account-id",
            "123456789012",
        ]) else {
            panic!("not publish")
        };
        assert_eq!(p.common.issuer.as_str(), "https://o.example.com/c");
        assert_eq!(p.out_dir, PathBuf::from("ecr-refresh-oidc"));
        assert_eq!(p.role.role_name, "ecr-refresh");
        assert_eq!(
            p.role.subject(),
            "system:serviceaccount:kube-system:ecr-refresh"
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_the_fix() {
        for (args, says) in [
            (
                &["check", "--issuer-url", "http://o.example.com"][..],
                "is http",
            ),
            (
                &["check", "--issuer-url", "https://o.example.com:8443"][..],
                "has a port (:8443)",
            ),
            (
                &["check", "--issuer-url", "https://o.example.com/c/"][..],
                "use https://o.example.com/c",
            ),
            (
                &["publish", "--issuer-url", "https://o", "--account-id", "12"][..],
                "12 digits",
            ),
            (
                &[
                    "publish",
                    "--issuer-url",
                    "https://o",
                    "--account-id",
                    "123456789012",
                    "--service-account",
                    "ecr-refresh",
                ][..],
                "NAMESPACE/NAME",
            ),
            (
                &["publish", "--issuer-url", "https://o"][..],
                "--account-id",
            ),
        ] {
            let err = parse(&[&["oidc"], args].concat()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let msg = err.to_string();
            assert!(msg.contains(says), "{args:?}: {msg}");
        }
    }
}
