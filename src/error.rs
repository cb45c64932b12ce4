//! One error type, one variant per operation, and the exit code each one maps to.

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes, documented in the README and in `--help`.
pub(crate) mod exit {
    /// Every selected namespace is in the desired state.
    pub(crate) const OK: u8 = 0;
    /// At least one namespace or Argo CD Secret failed (for `status`: is unhealthy); the others
    /// were still processed. Also: the report could not be written to stdout.
    pub(crate) const NAMESPACE_FAILED: u8 = 1;
    /// A flag, env variable or kubeconfig setting is invalid, or stdout is closed; nothing was
    /// contacted or written.
    pub(crate) const INVALID_INPUT: u8 = 2;
    /// No usable ECR token; nothing was written.
    pub(crate) const ECR_TOKEN: u8 = 3;
    /// The Kubernetes API could not be reached, refused the credentials, or refused to list
    /// namespaces (or pods, for --delete-stuck-pods); nothing was written.
    pub(crate) const CLUSTER_ACCESS: u8 = 4;
}

#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("invalid {flag} {value:?}: {reason}")]
    InvalidInput {
        flag: &'static str,
        value: String,
        reason: String,
    },

    /// The --tenants file is unreadable or wrong; `line` 0 and an empty `key` when the whole
    /// file is.
    #[error("{}", tenants_file(file, *line, key, reason))]
    TenantsFile {
        file: String,
        line: u64,
        key: String,
        reason: String,
    },

    #[error("no AWS region configured: pass --region, set AWS_REGION, or set a region in the AWS profile")]
    NoRegion,

    #[error("kubeconfig: {message}")]
    KubeConfig { message: String },

    #[error("cannot read the kubeconfig {files}: {message}")]
    ReadKubeconfig { files: String, message: String },

    #[error("cannot read the AWS config files {files}: {message}")]
    ReadAwsConfig { files: String, message: String },

    #[error("cannot use the Kubernetes API at {server}: {message}")]
    ClusterAccess { server: String, message: String },

    #[error("cannot list namespaces: {message} (grant `list` on namespaces, or name namespaces literally with -n so no listing is needed)")]
    ListNamespaces { message: String },

    #[error("--delete-stuck-pods: cannot list pods: {message}")]
    ListPods { message: String },

    #[error("cannot get an ECR authorization token in region {region}: {message}")]
    EcrToken { region: String, message: String },

    /// With --tenants: one tenant's token failed; only its namespaces go without.
    #[error("{tenant}: {message}")]
    TenantToken { tenant: String, message: String },

    #[error("ECR returned an unusable token in region {region}: {reason}")]
    EcrTokenInvalid { region: String, reason: String },

    #[error("stdout is closed, so the report would be lost: run with stdout open, or redirect it (>/dev/null) to throw it away")]
    StdoutClosed,

    #[error("cannot use the cluster's ServiceAccount issuer at {server}: {message}")]
    OidcDiscovery { server: String, message: String },

    #[error("the run was cancelled: {reason}")]
    Cancelled { reason: String },
}

impl Error {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::InvalidInput { .. }
            | Error::TenantsFile { .. }
            | Error::NoRegion
            | Error::KubeConfig { .. }
            | Error::StdoutClosed => exit::INVALID_INPUT,
            Error::ReadKubeconfig { .. }
            | Error::ClusterAccess { .. }
            | Error::ListNamespaces { .. }
            | Error::ListPods { .. }
            | Error::OidcDiscovery { .. } => exit::CLUSTER_ACCESS,
            Error::ReadAwsConfig { .. }
            | Error::EcrToken { .. }
            | Error::TenantToken { .. }
            | Error::EcrTokenInvalid { .. } => exit::ECR_TOKEN,
            Error::Cancelled { .. } => exit::NAMESPACE_FAILED,
        }
    }

    /// A short stable name for JSON output.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } | Error::TenantsFile { .. } => "invalid_input",
            Error::NoRegion => "no_region",
            Error::KubeConfig { .. } => "kubeconfig",
            // Not read before the deadline: the step's own kind, as for any setup step.
            Error::ReadKubeconfig { .. } | Error::ClusterAccess { .. } => "cluster_access",
            Error::ListNamespaces { .. } => "list_namespaces",
            Error::ListPods { .. } => "list_pods",
            Error::ReadAwsConfig { .. } | Error::EcrToken { .. } | Error::TenantToken { .. } => {
                "ecr_token"
            }
            Error::EcrTokenInvalid { .. } => "ecr_token_invalid",
            Error::OidcDiscovery { .. } => "oidc_discovery",
            Error::StdoutClosed => "stdout_closed",
            Error::Cancelled { .. } => "cancelled",
        }
    }
}

fn tenants_file(file: &str, line: u64, key: &str, reason: &str) -> String {
    let mut at = format!("invalid --tenants file {file:?}");
    if line > 0 {
        at.push_str(&format!(", line {line}"));
    }
    if !key.is_empty() {
        at.push_str(&format!(", {key}"));
    }
    format!("{at}: {reason}; nothing was written")
}

/// The messages of an error and its sources on one line, each once: libraries often repeat
/// their source's text in their own.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !out.contains(&part) {
            out.push_str(": ");
            out.push_str(&part);
        }
        source = s.source();
    }
    out
}
