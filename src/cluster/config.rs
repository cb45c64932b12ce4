//! Finding the cluster as kubectl does, and building the client: the kubeconfig, its errors
//! told without quoting it, and the connection.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::error::{Error, Result};

/// How to find the cluster, as kubectl does: `--kubeconfig`, else `KUBECONFIG` or
/// `~/.kube/config`, else the in-cluster ServiceAccount.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClusterOptions {
    pub(crate) kubeconfig: Option<std::path::PathBuf>,
    pub(crate) context: Option<String>,
    pub(crate) request_timeout: Duration,
}

impl ClusterOptions {
    /// The kube context these options pick, as [`load_config`] does, or `in-cluster` when there
    /// is no kubeconfig and the pod's environment names the API server. `None` when neither can
    /// be told (a kubeconfig that cannot be read, no current context): it names the run to
    /// others (the Pushgateway's `instance`), and a laptop's broken run must not pass for the
    /// CronJob's `in-cluster`. Only regular files are read here, before the run and outside
    /// its deadline: a FIFO or `<(…)` could block, and gives its content only once, to the run.
    pub(crate) fn context_name(&self) -> Option<String> {
        if let Some(ctx) = &self.context {
            return Some(ctx.clone());
        }
        let regular = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
        let files: Vec<std::path::PathBuf> =
            match (&self.kubeconfig, std::env::var_os("KUBECONFIG")) {
                (Some(path), _) => vec![path.clone()],
                (None, Some(list)) if !list.is_empty() => std::env::split_paths(&list).collect(),
                (None, _) => std::env::var_os("HOME")
                    .map(|h| Path::new(&h).join(".kube/config"))
                    .into_iter()
                    .collect(),
            };
        if files.iter().any(|p| p.exists() && !regular(p)) {
            return None;
        }
        let kubeconfig = match &self.kubeconfig {
            Some(path) => kube::config::Kubeconfig::read_from(path),
            None if kubeconfig_exists() => kube::config::Kubeconfig::read(),
            None => {
                let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
                return in_cluster.then(|| "in-cluster".to_string());
            }
        };
        kubeconfig
            .ok()
            .and_then(|k| k.current_context)
            .filter(|c| !c.is_empty())
    }
}

/// `KUBECONFIG` or `~/.kube/config` names a kubeconfig, so the run does not use the in-cluster
/// config (kube falls back to it only when there is none).
fn kubeconfig_exists() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::var_os("HOME")
            .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists())
}

/// kube's client, but with TCP_NODELAY: without it the first request on each new connection
/// (the one after the TLS handshake) waits about 40 ms for a delayed ACK, which was a third of a
/// 100-namespace pass. Through a proxy, kube's own stack is used as it is.
pub(super) fn client(config: Config) -> Result<Client, kube::Error> {
    use kube::client::ConfigExt as _;
    use tower::ServiceBuilder;

    if config.proxy_url.is_some() {
        return Client::try_from(config);
    }
    let https = config.rustls_https_connector_with_connector(tcp_connector())?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, kube::client::Body>(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(Client::new(service, config.default_namespace))
}

/// TCP for the API server, with TLS on top; [`client`] says why not kube's.
pub(super) fn tcp_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

/// Loads the client config, and names where it came from ("context prod", "in-cluster") for
/// error messages.
pub(super) async fn load_config(opts: &ClusterOptions) -> Result<(Config, String)> {
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let label = |kubeconfig: Option<&Kubeconfig>| {
        let current = kubeconfig.and_then(|k| k.current_context.clone());
        match opts.context.clone().or(current) {
            Some(ctx) => format!("context {ctx:?}"),
            None => "in-cluster config".to_string(),
        }
    };
    // Each file is read once: a FIFO or a `<(…)` gives its content only once.
    let kubeconfig = if let Some(path) = &opts.kubeconfig {
        read_kubeconfig(path, "--kubeconfig")?
    } else if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        // KUBECONFIG may be a list; kube merges it, but first name the file that is missing.
        for p in std::env::split_paths(&path) {
            if !p.exists() {
                return Err(Error::InvalidInput {
                    flag: "KUBECONFIG",
                    value: p.display().to_string(),
                    reason: "file does not exist; fix KUBECONFIG or pass --kubeconfig".into(),
                });
            }
        }
        Kubeconfig::read().map_err(|e| kubeconfig_error(e, opts))?
    } else if opts.context.is_some() {
        Kubeconfig::read().map_err(|e| kubeconfig_error(e, opts))?
    } else {
        let config = Config::infer().await.map_err(|e| {
            // A broken ~/.kube/config: say so, without kube's quote of the file.
            let reason = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<KubeconfigError>())
                .filter(|k| matches!(k, KubeconfigError::Parse(_)))
                .map_or_else(|| e.to_string(), describe_kubeconfig_error);
            Error::KubeConfig {
                message: format!(
                    "no kubeconfig found and not running in a cluster ({reason}); pass --kubeconfig or set KUBECONFIG"
                ),
            }
        })?;
        return Ok((config, label(Kubeconfig::read().ok().as_ref())));
    };
    let label = label(Some(&kubeconfig));
    Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map(|c| (c, label))
        .map_err(|e| kubeconfig_error(e, opts))
}

/// The kubeconfig file(s) these options read, for a message: `--kubeconfig`, `KUBECONFIG`, or
/// `~/.kube/config`, else the in-cluster ServiceAccount files.
pub(super) fn kubeconfig_files(opts: &ClusterOptions) -> String {
    if let Some(path) = &opts.kubeconfig {
        return format!("{:?} (--kubeconfig)", path.display().to_string());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return format!("{:?} (KUBECONFIG)", list.to_string_lossy());
    }
    match std::env::var_os("HOME") {
        Some(home) => format!(
            "{:?} (or the in-cluster ServiceAccount files)",
            Path::new(&home).join(".kube/config").display().to_string()
        ),
        None => "the in-cluster ServiceAccount files".into(),
    }
}

fn read_kubeconfig(path: &Path, flag: &'static str) -> Result<Kubeconfig> {
    if !path.exists() {
        return Err(Error::InvalidInput {
            flag,
            value: path.display().to_string(),
            reason: "file does not exist".into(),
        });
    }
    Kubeconfig::read_from(path).map_err(|e| Error::InvalidInput {
        flag,
        value: path.display().to_string(),
        reason: describe_kubeconfig_error(&e),
    })
}

/// One line for a kubeconfig error that never quotes the file: its parse errors come with the
/// lines around the fault, and those hold tokens and passwords. Like kubectl, say only where
/// and what (`yaml: line 15, column 11: mapping values are not allowed in this context`).
pub(super) fn describe_kubeconfig_error(e: &KubeconfigError) -> String {
    let KubeconfigError::Parse(parse) = e else {
        return redact_urls(&e.to_string());
    };
    // Even the plain text may name a value or key (`invalid type: string "..."`, `duplicate
    // mapping key: <key>`): keep only the words before any detail, and only if they are words.
    let plain = parse.without_snippet().to_string();
    let mut reason = plain.clone();
    if let Some(loc) = parse.location() {
        let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
        reason = reason
            .strip_suffix(suffix.as_str())
            .unwrap_or(&reason)
            .to_string();
    }
    let reason = reason.split(':').next().unwrap_or_default().trim();
    let reason = if !reason.is_empty()
        && reason
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '-')
    {
        reason
    } else {
        "not valid kubeconfig YAML"
    };
    if let Some(loc) = parse.location() {
        return format!(
            "yaml: line {}, column {}: {reason} (content not shown)",
            loc.line(),
            loc.column()
        );
    }
    format!("yaml: {reason} (content not shown)")
}

/// A server URL as kubectl prints it: a password in it shows as `***`.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// [`redact_url`] on every URL in a message.
pub(super) fn redact_urls(msg: &str) -> String {
    msg.split_inclusive(char::is_whitespace)
        .map(|word| match word.find("://") {
            Some(i) => {
                let start = word[..i]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                    .map_or(0, |j| j + 1);
                format!("{}{}", &word[..start], redact_url(&word[start..]))
            }
            None => word.to_string(),
        })
        .collect()
}

pub(super) fn kubeconfig_error(e: KubeconfigError, opts: &ClusterOptions) -> Error {
    match (&e, &opts.context) {
        (KubeconfigError::LoadContext(_) | KubeconfigError::LoadClusterOfContext(_), Some(ctx)) => {
            Error::InvalidInput {
                flag: "--context",
                value: ctx.clone(),
                reason: "no such context in the kubeconfig (see `kubectl config get-contexts`)"
                    .into(),
            }
        }
        _ => Error::KubeConfig {
            message: describe_kubeconfig_error(&e),
        },
    }
}
