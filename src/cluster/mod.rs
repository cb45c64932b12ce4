//! Connecting to the Kubernetes API, and running calls with a timeout and bounded retries.

mod config;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, Config};
use tracing::{debug, warn};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};

use crate::error::{chain, Error, Result};
use crate::kubeauth::{self, AuthError};
pub(crate) use config::ClusterOptions;
use config::{client, kubeconfig_files, load_config, redact_url, redact_urls};

/// How every failure to sign in begins, whatever the cause.
const NOT_AUTHENTICATED: &str = "could not authenticate";

/// The field manager of every write, so server-side apply can tell our fields from others'.
pub(crate) const FIELD_MANAGER: &str = "ecr-refresh";

/// Attempts per call: the first plus retries of transient failures.
const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Page size of [`Cluster::list_named`]: 500 ServiceAccounts are about 0.5 MB, 500 pull
/// Secrets a few MB.
const LIST_PAGE: u32 = 500;

/// Counts what a run cost the API server.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Stats {
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// The kubeconfig read and checked, before the exec plugin runs and the client is built.
pub(crate) struct PendingCluster {
    config: Config,
    source: String,
    server: String,
    request_timeout: Duration,
}

impl PendingCluster {
    /// Reads only local files, on a thread of its own (see `detached`): a kubeconfig that is a
    /// FIFO or a slow `<(…)` holds only that thread, so the caller's deadline and signals still
    /// end the run.
    pub(crate) async fn load(opts: &ClusterOptions) -> Result<Self> {
        let opts = opts.clone();
        crate::shutdown::detached(async move { Self::load_here(&opts).await }).await
    }

    async fn load_here(opts: &ClusterOptions) -> Result<Self> {
        let (mut config, source) = load_config(opts).await?;
        config.connect_timeout = Some(opts.request_timeout);
        config.read_timeout = Some(opts.request_timeout);
        config.write_timeout = Some(opts.request_timeout);
        config.reset_reader_on_write = true;
        // Our own retry loop below is bounded, logged and counted; kube's default is not.
        config.default_retry = false;
        let server = format!("{} ({source})", redact_url(&config.cluster_url.to_string()));
        Ok(Self {
            config,
            source,
            server,
            request_timeout: opts.request_timeout,
        })
    }

    /// The error for a deadline that passed while [`PendingCluster::load`] was reading.
    pub(crate) fn unread(opts: &ClusterOptions) -> impl FnOnce(String) -> Error {
        let files = kubeconfig_files(opts);
        move |deadline| Error::ReadKubeconfig {
            files,
            message: format!("{deadline} while reading it; nothing was written"),
        }
    }

    /// The error for a deadline that passed during [`PendingCluster::connect`], naming what it
    /// waits for: the user's files, or the exec plugin.
    pub(crate) fn hung_connecting(&self) -> impl FnOnce(String) -> Error {
        hung(
            self.server.clone(),
            kubeauth::waits_for(&self.config.auth_info),
        )
    }

    /// Runs the exec plugin, if any, reads the user's files and builds the client, on a thread
    /// of its own as [`PendingCluster::load`] does (a tokenFile may be a FIFO).
    pub(crate) async fn connect(self) -> Result<Cluster> {
        crate::shutdown::detached(self.connect_here()).await
    }

    async fn connect_here(self) -> Result<Cluster> {
        let Self {
            mut config,
            source,
            server,
            request_timeout,
        } = self;
        kubeauth::prepare(&mut config.auth_info)
            .await
            .map_err(|e| match e {
                AuthError::Kubeconfig(m) => Error::KubeConfig {
                    message: format!("{source}: {m}"),
                },
                AuthError::Plugin(m) => Error::ClusterAccess {
                    server: server.clone(),
                    message: format!("{NOT_AUTHENTICATED}: {m}"),
                },
            })?;
        let client = client(config).map_err(|e| Error::ClusterAccess {
            server: server.clone(),
            message: redact_urls(&e.to_string()),
        })?;
        Ok(Cluster {
            client,
            server,
            request_timeout,
            stats: Arc::default(),
        })
    }
}

fn hung(server: String, what: impl std::fmt::Display) -> impl FnOnce(String) -> Error {
    move |deadline| Error::ClusterAccess {
        server,
        message: format!("{deadline} while {what}; nothing was written"),
    }
}

/// What a list sends of each object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Only its metadata (PartialObjectMetadata): a tenth of the bytes of whole Secrets.
    Metadata,
    /// The whole object.
    Whole,
}

#[derive(Clone)]
pub(crate) struct Cluster {
    client: Client,
    server: String,
    request_timeout: Duration,
    stats: Arc<Stats>,
}

impl Cluster {
    /// The error for a deadline that passed while `what` was under way.
    pub(crate) fn hung(&self, what: &'static str) -> impl FnOnce(String) -> Error {
        hung(self.server.clone(), what)
    }

    /// The server as messages name it.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Checks that the server answers and knows who we are, before anything else runs. A
    /// SelfSubjectAccessReview (any signed-in user may create one, on every version) is
    /// refused for `system:anonymous`: credentials the server ignores (basic auth, an empty
    /// user) would otherwise pass here and fail every namespace with advice to grant RBAC.
    pub(crate) async fn check_access(&self) -> Result<()> {
        let api = kube::Api::<SelfSubjectAccessReview>::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("list".into()),
                    resource: Some("namespaces".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let params = kube::api::PostParams::default();
        let result = self
            .call("check credentials", || api.create(&params, &review))
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_status(&e, |s| s.is_forbidden() && is_anonymous(&s.message)) => {
                return Err(Error::ClusterAccess {
                    server: self.server.clone(),
                    message: format!("{NOT_AUTHENTICATED}: the server took the request as anonymous (system:anonymous), so the kubeconfig's user has no credentials it accepts (Kubernetes ignores basic auth since 1.19); give the user a token, a client certificate or an exec plugin"),
                });
            }
            // Signed in, but not allowed to ask: that is for the calls that need it to say.
            Err(e) if is_status(&e, |s| s.is_forbidden()) => {}
            Err(e) => {
                return Err(Error::ClusterAccess {
                    server: self.server.clone(),
                    message: redact_urls(&match &e {
                        kube::Error::Api(_) => explain(&e),
                        _ => format!(
                            "{} (is the server reachable from here? check the kubeconfig's server address, VPN, and HTTPS_PROXY/NO_PROXY)",
                            explain(&e)
                        ),
                    }),
                })
            }
        }
        debug!(server = %self.server, "connected to Kubernetes API");
        Ok(())
    }

    /// Every object called `name` in the cluster, page by page: one cluster-wide list with a
    /// field selector on the name (RBAC can allow it for that name only: `list` with
    /// `resourceNames`) instead of a read per namespace. `each` sees every object as its page
    /// arrives, so no more than a page of whole objects is held at once.
    /// With [`Parts::Metadata`] the server sends only each object's `metadata`
    /// (PartialObjectMetadata), leaving out the rest, such as a Secret's payload; `each` then
    /// sees objects with nothing else filled in.
    pub(crate) async fn list_named<K>(
        &self,
        what: &str,
        name: &str,
        parts: Parts,
        mut each: impl FnMut(K),
    ) -> Result<(), kube::Error>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Default
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: kube::Api<K> = kube::Api::all(self.client.clone());
        let api = &api;
        if parts == Parts::Metadata {
            let list = |lp| async move { api.list_metadata(&lp).await };
            let bare = |m: kube::core::PartialObjectMeta<K>| {
                let mut object = K::default();
                *object.meta_mut() = m.metadata;
                object
            };
            self.pages(what, name, list, |m| each(bare(m))).await
        } else {
            let list = |lp| async move { api.list(&lp).await };
            self.pages(what, name, list, each).await
        }
    }

    /// Every page of a list by name, each item handed to `each` as its page arrives.
    async fn pages<T, Fut>(
        &self,
        what: &str,
        name: &str,
        list: impl Fn(kube::api::ListParams) -> Fut,
        mut each: impl FnMut(T),
    ) -> Result<(), kube::Error>
    where
        Fut: Future<Output = Result<kube::core::ObjectList<T>, kube::Error>>,
        T: Clone,
    {
        let mut lp = kube::api::ListParams::default()
            .fields(&format!("metadata.name={name}"))
            .limit(LIST_PAGE);
        loop {
            let page = self.call(what, || list(lp.clone())).await?;
            page.items.into_iter().for_each(&mut each);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => lp.continue_token = Some(token),
                _ => return Ok(()),
            }
        }
    }

    /// Runs one API call with a timeout, retrying transient failures (5xx, 429, transport
    /// errors, timeouts) with exponential backoff that honours the server's Retry-After.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.call_counted(what, f).await.0
    }

    /// [`Self::call`], and how many times the request was sent: more than once, an earlier
    /// attempt may have been carried out with its answer lost.
    pub(crate) async fn call_counted<T, F, Fut>(
        &self,
        what: &str,
        mut f: F,
    ) -> (Result<T, kube::Error>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut backoff = BACKOFF_START;
        let mut attempt = 1;
        loop {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let result = match tokio::time::timeout(self.request_timeout, f()).await {
                Ok(r) => r,
                Err(_) => Err(kube::Error::Service(
                    format!(
                        "request timed out after {}",
                        humantime::format_duration(self.request_timeout)
                    )
                    .into(),
                )),
            };
            let err = match result {
                Ok(v) => return (Ok(v), attempt),
                Err(e) => e,
            };
            let Some(server_delay) = transient(&err) else {
                return (Err(err), attempt);
            };
            if attempt >= MAX_ATTEMPTS {
                warn!(call = what, attempts = attempt, error = %explain(&err), "giving up after retries");
                return (Err(err), attempt);
            }
            let delay = server_delay.unwrap_or(backoff).min(BACKOFF_MAX * 2);
            warn!(call = what, attempt, retry_in = ?delay, error = %explain(&err), "transient API error, retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            attempt += 1;
        }
    }
}

/// `Some(server-suggested delay)` when an error is worth retrying.
fn transient(err: &kube::Error) -> Option<Option<Duration>> {
    match err {
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => Some(
            status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s))),
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => Some(None),
        _ => None,
    }
}

/// One readable line for a Kubernetes error: the server's message, not kube's debug dump.
pub(crate) fn explain(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) if s.code == 401 => {
            format!(
                "401 Unauthorized: the cluster rejected the credentials in the kubeconfig ({})",
                s.message
            )
        }
        kube::Error::Api(s) if s.message.is_empty() => format!("{} {}", s.code, s.reason),
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => chain(other),
    }
}

/// [`explain`], plus a hint for a 403. Admission (quotas, policies, a terminating namespace)
/// refuses with 403 too, so the RBAC hint is only given for the authorizer's own message.
pub(crate) fn explain_write(err: &kube::Error) -> String {
    let msg = explain(err);
    let kube::Error::Api(s) = err else {
        return msg;
    };
    if !s.is_forbidden() {
        msg
    } else if is_anonymous(&s.message) {
        // Granting rights to everyone who is not signed in is never the fix.
        format!("{msg} (the request was anonymous: the kubeconfig's credentials were not accepted)")
    } else if is_rbac_refusal(&s.message) {
        format!("{msg} (grant the missing permission; see rbac.yaml)")
    } else if s.message.contains("exceeded quota") {
        format!("{msg} (a ResourceQuota in this namespace is full: raise the quota or free room)")
    } else {
        msg
    }
}

/// Whether `err` is the authorizer's 403 (not admission's, which is a 403 too).
pub(crate) fn is_rbac_forbidden(err: &kube::Error) -> bool {
    is_status(err, |s| s.is_forbidden() && is_rbac_refusal(&s.message))
}

/// The authorizer's refusal: `User "u" cannot get resource "secrets" in API group "" ...` (or
/// `... cannot get path "/x"`).
fn is_rbac_refusal(message: &str) -> bool {
    message.contains(" cannot ")
        && (message.contains(" resource \"") || message.contains(" path \""))
}

/// The authorizer's refusal of a request that carried no credentials it accepted.
fn is_anonymous(message: &str) -> bool {
    message.contains(r#"User "system:anonymous""#)
}

pub(crate) fn is_status(err: &kube::Error, pred: impl Fn(&kube::core::Status) -> bool) -> bool {
    matches!(err, kube::Error::Api(s) if pred(s))
}

#[cfg(test)]
mod tests {
    use super::config::{describe_kubeconfig_error, tcp_connector};
    use super::*;
    use kube::config::Kubeconfig;

    #[tokio::test]
    async fn connections_to_the_api_server_send_at_once() {
        use tower::Service as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: http::Uri = format!("https://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let stream = tcp_connector().call(uri).await.expect("connect");
        assert!(
            stream.inner().nodelay().unwrap(),
            "TCP_NODELAY is off: a request after the TLS handshake waits for a delayed ACK"
        );
    }

    const SECRET: &str = "eyJhbGciOiJSUzI1NiJ9.SECRET";

    #[test]
    fn kubeconfig_parse_errors_never_quote_the_file() {
        for yaml in [
            "users:\n- name: u\n  user:\n    token: eyJhbGciOiJSUzI1NiJ9.SECRET\n     extra: oops\n",
            "users:\n- name: u\n  user: \"eyJhbGciOiJSUzI1NiJ9.SECRET\"\n",
            "users:\n- name: u\n  user:\n    token: [eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "users:\n- name: u\n  user:\n    token:\n      eyJhbGciOiJSUzI1NiJ9.SECRET: 1\n",
            "users: eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "users:\n- name: u\n  user:\n    token: eyJhbGciOiJSUzI1NiJ9.SECRET\n    token: again\n",
            "clusters:\n- name: c\n  cluster:\n    insecure-skip-tls-verify: eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "users:\n- name: u\n  user:\n    password: 'eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "current-context: {eyJhbGciOiJSUzI1NiJ9.SECRET: x}\n",
            "users:\n- name: u\n  user:\n    token: *eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "users:\n- name: u\n  user:\n    exec: eyJhbGciOiJSUzI1NiJ9.SECRET\n",
            "users:\n- name: u\n  user:\n    SECRET: 1\n    SECRET: 2\n",
            "users:\n- name: u\n  user:\n    token: SECRET\n   \"SECRET\n",
        ] {
            let err = Kubeconfig::from_yaml(yaml).expect_err(yaml);
            assert!(err.to_string().contains("SECRET"), "kube quotes it: {err}");
            let msg = describe_kubeconfig_error(&err);
            println!("{msg}");
            assert!(!msg.contains("SECRET") && !msg.contains(SECRET), "{yaml}: {msg}");
            assert!(msg.starts_with("yaml: "), "{msg}");
        }
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            redact_url("https://u:SECRET@host:6443/x"),
            "https://u:***@host:6443/x"
        );
        assert_eq!(redact_url("https://u@host"), "https://u@host");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_url("https://u:p@ss@host"), "https://u:***@host");
        assert_eq!(
            redact_urls("error sending request for url (https://u:SECRET@h/version) (x)"),
            "error sending request for url (https://u:***@h/version) (x)"
        );
    }

    fn forbidden(message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, "Forbidden").with_code(403),
        ))
    }

    #[test]
    fn the_rbac_hint_is_only_for_rbac_refusals() {
        let rbac = explain_write(&forbidden(
            r#"secrets "awsecr-cred" is forbidden: User "system:serviceaccount:kube-system:ecr-refresh" cannot patch resource "secrets" in API group "" in the namespace "a""#,
        ));
        assert!(
            rbac.ends_with("(grant the missing permission; see rbac.yaml)"),
            "{rbac}"
        );
        let quota = explain_write(&forbidden(
            r#"secrets "awsecr-cred" is forbidden: exceeded quota: q, requested: secrets=1, used: secrets=1, limited: secrets=1"#,
        ));
        assert!(quota.contains("ResourceQuota"), "{quota}");
        assert!(!quota.contains("rbac.yaml"), "{quota}");
        let webhook = explain_write(&forbidden(
            r#"admission webhook "policy.example.com" denied the request: no"#,
        ));
        assert!(
            !webhook.contains("rbac.yaml") && !webhook.contains("quota"),
            "{webhook}"
        );
    }
}
